package replicator.daemon;

import com.amazonaws.services.dynamodbv2.streamsadapter.model.DynamoDBStreamsProcessRecordsInput;
import com.amazonaws.services.dynamodbv2.streamsadapter.processor.DynamoDBStreamsShardRecordProcessor;
import java.util.ArrayList;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import software.amazon.kinesis.lifecycle.events.InitializationInput;
import software.amazon.kinesis.lifecycle.events.LeaseLostInput;
import software.amazon.kinesis.lifecycle.events.ProcessRecordsInput;
import software.amazon.kinesis.lifecycle.events.ShardEndedInput;
import software.amazon.kinesis.lifecycle.events.ShutdownRequestedInput;
import software.amazon.kinesis.multilang.PathChildProcesses;
import software.amazon.kinesis.processor.ShardRecordProcessor;
import software.amazon.kinesis.processor.ShardRecordProcessorFactory;
import software.amazon.kinesis.retrieval.KinesisClientRecord;

/**
 * One shard's processor of one path: hands every call unchanged to KCL's MultiLang processor, which runs our
 * Python record processor as a child process. The adapter only accepts processors of its own type, and a
 * plain KCL scheduler (Kinesis paths) accepts it too.
 *
 * <p>Each path keeps its processors between initialize and their last call (leaseLost or shardEnded), so that
 * a stop can tell when every one has ended: KCL 3.1's scheduler keeps a consumer whose processor has ended
 * for up to failoverTimeMillis before it completes its own shutdown. A processor whose child failed (a
 * non-retryable error: the child exits without checkpointing) reports it to its path once, and from then on
 * passes nothing on: no later batch reaches a dead child, and no shutdown checkpoints past the failed batch.
 */
final class MultiLangStreamsProcessor implements DynamoDBStreamsShardRecordProcessor {
    /** The live processors of one path. */
    static final class Processors {
        private final Set<MultiLangStreamsProcessor> live = ConcurrentHashMap.newKeySet();

        /** Processors initialised and not yet ended: none writes or checkpoints once this is 0. */
        int running() {
            return live.size();
        }

        /** Live processors whose child has failed: they write nothing more and will never end by themselves. */
        int failed() {
            int failed = 0;
            for (MultiLangStreamsProcessor processor : live) {
                if (processor.failed) {
                    failed++;
                }
            }
            return failed;
        }
    }

    private final Processors processors;
    private final Runnable onChildFailure;
    private ShardRecordProcessor multiLang;
    private volatile boolean failed;

    private MultiLangStreamsProcessor(Processors processors, Runnable onChildFailure) {
        this.processors = processors;
        this.onChildFailure = onChildFailure;
    }

    /** A factory of one path's processors, whose children get the path's environment. */
    static ShardRecordProcessorFactory factory(
            PathChildProcesses children, Processors processors, Runnable onChildFailure) {
        return () -> {
            MultiLangStreamsProcessor processor = new MultiLangStreamsProcessor(processors, onChildFailure);
            processor.multiLang = children.create(processor::childFailed);
            return processor;
        };
    }

    private void childFailed() {
        boolean first = !failed;
        failed = true;
        if (first) {
            onChildFailure.run();
        }
    }

    private void call(Runnable delegate) {
        if (!failed) {
            delegate.run();
        }
    }

    @Override
    public void initialize(InitializationInput input) {
        processors.live.add(this);
        call(() -> multiLang.initialize(input));
    }

    @Override
    public void processRecords(ProcessRecordsInput input) {
        // Kinesis records, or the adapter's DynamoDBStreamsClientRecords (data: the stream record as JSON).
        call(() -> multiLang.processRecords(input));
    }

    @Override
    public void processRecords(DynamoDBStreamsProcessRecordsInput input) {
        call(() -> multiLang.processRecords(ProcessRecordsInput.builder()
                .records(new ArrayList<KinesisClientRecord>(input.records()))
                .checkpointer(input.checkpointer())
                .cacheEntryTime(input.cacheEntryTime())
                .cacheExitTime(input.cacheExitTime())
                .millisBehindLatest(input.millisBehindLatest())
                .childShards(input.childShards())
                .isAtShardEnd(input.isAtShardEnd())
                .build()));
    }

    @Override
    public void leaseLost(LeaseLostInput input) {
        try {
            call(() -> multiLang.leaseLost(input));
        } finally {
            processors.live.remove(this);
        }
    }

    @Override
    public void shardEnded(ShardEndedInput input) {
        try {
            call(() -> multiLang.shardEnded(input));
        } finally {
            processors.live.remove(this);
        }
    }

    @Override
    public void shutdownRequested(ShutdownRequestedInput input) {
        call(() -> multiLang.shutdownRequested(input));
    }
}
