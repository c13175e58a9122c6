package replicator.daemon;

import com.amazonaws.services.dynamodbv2.streamsadapter.model.DynamoDBStreamsProcessRecordsInput;
import com.amazonaws.services.dynamodbv2.streamsadapter.processor.DynamoDBStreamsShardRecordProcessor;
import java.util.ArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import software.amazon.kinesis.lifecycle.events.InitializationInput;
import software.amazon.kinesis.lifecycle.events.LeaseLostInput;
import software.amazon.kinesis.lifecycle.events.ProcessRecordsInput;
import software.amazon.kinesis.lifecycle.events.ShardEndedInput;
import software.amazon.kinesis.lifecycle.events.ShutdownRequestedInput;
import software.amazon.kinesis.processor.ShardRecordProcessor;
import software.amazon.kinesis.processor.ShardRecordProcessorFactory;
import software.amazon.kinesis.retrieval.KinesisClientRecord;

/**
 * The adapter only accepts processors of its own type; this one hands every call unchanged to KCL's
 * MultiLang processor, which runs our Python record processor as a child process per shard.
 *
 * <p>It also counts the processors between initialize and their last call (leaseLost or shardEnded), so that
 * a stop can tell when every one has ended: KCL 3.1's scheduler keeps a consumer whose processor has ended
 * for up to failoverTimeMillis before it completes its own shutdown.
 */
final class MultiLangStreamsProcessor implements DynamoDBStreamsShardRecordProcessor {
    private static final AtomicInteger RUNNING = new AtomicInteger();

    private final ShardRecordProcessor multiLang;
    private boolean running;

    MultiLangStreamsProcessor(ShardRecordProcessor multiLang) {
        this.multiLang = multiLang;
    }

    /** Wraps a MultiLang processor factory so that the adapter's scheduler accepts it. */
    static ShardRecordProcessorFactory factory(ShardRecordProcessorFactory multiLangFactory) {
        return () -> new MultiLangStreamsProcessor(multiLangFactory.shardRecordProcessor());
    }

    /** Processors of this worker initialised and not yet ended: none writes or checkpoints once this is 0. */
    static int running() {
        return RUNNING.get();
    }

    @Override
    public void initialize(InitializationInput input) {
        running = true;
        RUNNING.incrementAndGet();
        multiLang.initialize(input);
    }

    @Override
    public void processRecords(ProcessRecordsInput input) {
        // The records are the adapter's DynamoDBStreamsClientRecords, whose data is the stream record as JSON.
        multiLang.processRecords(input);
    }

    @Override
    public void processRecords(DynamoDBStreamsProcessRecordsInput input) {
        multiLang.processRecords(ProcessRecordsInput.builder()
                .records(new ArrayList<KinesisClientRecord>(input.records()))
                .checkpointer(input.checkpointer())
                .cacheEntryTime(input.cacheEntryTime())
                .cacheExitTime(input.cacheExitTime())
                .millisBehindLatest(input.millisBehindLatest())
                .childShards(input.childShards())
                .isAtShardEnd(input.isAtShardEnd())
                .build());
    }

    @Override
    public void leaseLost(LeaseLostInput input) {
        try {
            multiLang.leaseLost(input);
        } finally {
            ended();
        }
    }

    @Override
    public void shardEnded(ShardEndedInput input) {
        try {
            multiLang.shardEnded(input);
        } finally {
            ended();
        }
    }

    private void ended() {
        if (running) {
            running = false;
            RUNNING.decrementAndGet();
        }
    }

    @Override
    public void shutdownRequested(ShutdownRequestedInput input) {
        multiLang.shutdownRequested(input);
    }
}
