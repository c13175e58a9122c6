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
import software.amazon.kinesis.processor.ShardRecordProcessor;
import software.amazon.kinesis.processor.ShardRecordProcessorFactory;
import software.amazon.kinesis.retrieval.KinesisClientRecord;

/**
 * The adapter only accepts processors of its own type; this one hands every call unchanged to KCL's
 * MultiLang processor, which runs our Python record processor as a child process per shard.
 *
 * <p>It also keeps the processors between initialize and their last call (leaseLost or shardEnded), so that
 * a stop can tell when every one has ended: KCL 3.1's scheduler keeps a consumer whose processor has ended
 * for up to failoverTimeMillis before it completes its own shutdown. And it notes which thread is in each
 * processor's call, so that a stop can tell a processor whose child failed: MultiLang then calls
 * System.exit(1) from inside that call (after the child has exited), and the call never returns, so that
 * processor will never end and a stop must not wait for it.
 */
final class MultiLangStreamsProcessor implements DynamoDBStreamsShardRecordProcessor {
    private static final Set<MultiLangStreamsProcessor> LIVE = ConcurrentHashMap.newKeySet();

    private final ShardRecordProcessor multiLang;
    private volatile Thread caller;

    MultiLangStreamsProcessor(ShardRecordProcessor multiLang) {
        this.multiLang = multiLang;
    }

    /** Wraps a MultiLang processor factory so that the adapter's scheduler accepts it. */
    static ShardRecordProcessorFactory factory(ShardRecordProcessorFactory multiLangFactory) {
        return () -> new MultiLangStreamsProcessor(multiLangFactory.shardRecordProcessor());
    }

    /** Processors of this worker initialised and not yet ended: none writes or checkpoints once this is 0. */
    static int running() {
        return LIVE.size();
    }

    /**
     * Live processors whose call is exiting the JVM (MultiLang's answer to a child that failed or exited):
     * their child is gone, so they write nothing more, and their call never returns.
     */
    static int exiting() {
        int exiting = 0;
        for (MultiLangStreamsProcessor processor : LIVE) {
            Thread thread = processor.caller;
            if (thread != null && inExit(thread)) {
                exiting++;
            }
        }
        return exiting;
    }

    private static boolean inExit(Thread thread) {
        for (StackTraceElement frame : thread.getStackTrace()) {
            if (frame.getClassName().equals("java.lang.Runtime") && frame.getMethodName().equals("exit")) {
                return true;
            }
        }
        return false;
    }

    /** Runs one call to the MultiLang processor, noting the thread that is in it. */
    private void call(Runnable delegate) {
        caller = Thread.currentThread();
        try {
            delegate.run();
        } finally {
            caller = null;
        }
    }

    @Override
    public void initialize(InitializationInput input) {
        LIVE.add(this);
        call(() -> multiLang.initialize(input));
    }

    @Override
    public void processRecords(ProcessRecordsInput input) {
        // The records are the adapter's DynamoDBStreamsClientRecords, whose data is the stream record as JSON.
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
            LIVE.remove(this);
        }
    }

    @Override
    public void shardEnded(ShardEndedInput input) {
        try {
            call(() -> multiLang.shardEnded(input));
        } finally {
            LIVE.remove(this);
        }
    }

    @Override
    public void shutdownRequested(ShutdownRequestedInput input) {
        call(() -> multiLang.shutdownRequested(input));
    }
}
