package replicator.daemon;

import com.amazonaws.services.dynamodbv2.streamsadapter.AmazonDynamoDBStreamsAdapterClient;
import com.amazonaws.services.dynamodbv2.streamsadapter.StreamsSchedulerFactory;
import com.amazonaws.services.dynamodbv2.streamsadapter.polling.DynamoDBStreamsPollingConfig;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import software.amazon.awssdk.services.dynamodb.DynamoDbAsyncClient;
import software.amazon.awssdk.services.dynamodb.model.Stream;
import software.amazon.awssdk.services.dynamodb.streams.DynamoDbStreamsClient;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.kinesis.checkpoint.CheckpointConfig;
import software.amazon.kinesis.common.ConfigsBuilder;
import software.amazon.kinesis.common.InitialPositionInStream;
import software.amazon.kinesis.common.InitialPositionInStreamExtended;
import software.amazon.kinesis.coordinator.CoordinatorConfig;
import software.amazon.kinesis.coordinator.Scheduler;
import software.amazon.kinesis.leases.LeaseManagementConfig;
import software.amazon.kinesis.lifecycle.LifecycleConfig;
import software.amazon.kinesis.metrics.MetricsConfig;
import software.amazon.kinesis.metrics.MetricsLevel;
import software.amazon.kinesis.metrics.NullMetricsFactory;
import software.amazon.kinesis.multilang.MultiLangDaemonConfig;
import software.amazon.kinesis.multilang.PathChildProcesses;
import software.amazon.kinesis.multilang.config.ConfigurationSettableUtils;
import software.amazon.kinesis.multilang.config.MultiLangDaemonConfiguration;
import software.amazon.kinesis.processor.ProcessorConfig;
import software.amazon.kinesis.processor.ShardRecordProcessorFactory;
import software.amazon.kinesis.processor.SingleStreamTracker;
import software.amazon.kinesis.retrieval.RetrievalConfig;
import software.amazon.kinesis.retrieval.polling.PollingConfig;

/**
 * One replication path in the daemon: its own KCL Scheduler, lease table (applicationName), worker id,
 * record processors (children started with the path's own environment), stale-leader-lock reaper and stop.
 *
 * <p>A table path's scheduler is the DynamoDB Streams adapter's; a Kinesis path's (sourceKinesisStream set)
 * is a plain KCL Scheduler polling the stream. Both get the same lease pre-creation ({@link InitialLeases}),
 * fair share of unowned leases taken at start ({@link StartingShare}), hand-back at a complete graceful
 * stop ({@link LeaseHandback}) and leader-lock reaper ({@link StaleLeaderLockReaper}).
 *
 * <p>A path stops by itself when one of its processors' children fails (a non-retryable error: the child
 * exits without checkpointing): it is stopped gracefully (its other shards checkpoint what they wrote, the
 * failed shard does not), and the daemon is told, which goes on with its other paths.
 */
final class PathWorker {
    private static final Logger log = LoggerFactory.getLogger(PathWorker.class);
    private static final long SHUTDOWN_POLL_MILLIS = 200;

    enum State { RUNNING, STOPPED, FAILED }

    final Path file;
    /** The path's lease table (applicationName) as its file names it, read once: how the daemon tells two files of one path. */
    final Optional<String> leaseTable;
    private final Map<String, String> environment;
    private final ScheduledExecutorService reaperExecutor;
    private final Consumer<PathWorker> onFailed;
    private final MultiLangStreamsProcessor.Processors processors = new MultiLangStreamsProcessor.Processors();
    private final CountDownLatch built = new CountDownLatch(1);
    private final AtomicBoolean failedOnce = new AtomicBoolean();
    private volatile State state = State.RUNNING;
    private volatile Scheduler scheduler;
    private volatile boolean scheduling;
    private boolean stopRequested;
    private Boolean stopResult;
    private StaleLeaderLockReaper leaderLock;
    private ScheduledFuture<?> reaping;
    private PathChildProcesses children;
    private String workerId;
    private LeaseManagementConfig leaseConfig;
    private String applicationName = "?";
    private long graceMillis = 60_000L;

    PathWorker(Path file, Map<String, String> environment, ScheduledExecutorService reaperExecutor,
            Consumer<PathWorker> onFailed) {
        this.file = file;
        this.leaseTable = leaseTableOf(file);
        this.environment = environment;
        this.reaperExecutor = reaperExecutor;
        this.onFailed = onFailed;
    }

    State state() {
        return state;
    }

    @Override
    public String toString() {
        return applicationName + " (" + file + ")";
    }

    /** Builds and runs the path on a thread of its own, so that paths start side by side. */
    void start() {
        Thread thread = new Thread(this::run, "path-" + file.getFileName());
        thread.start();
    }

    private void run() {
        try {
            build();
        } catch (Throwable t) {
            log.error("Path {} could not start: {}", file, t.toString(), t);
            built.countDown();
            fail();
            return;
        } finally {
            built.countDown();
        }
        StartingShare share = StartingShare.announce(leaseConfig, workerId);
        InitialLeases.createIfEmpty(scheduler);
        if (share != null) {
            share.take(scheduler.leaseRefresher());
        }
        synchronized (this) {
            if (stopRequested) {
                // Stopped while starting: no processor ran, so the leases just taken go back at once.
                LeaseHandback.release(scheduler.leaseRefresher(), workerId);
                StartingShare.forget(leaseConfig, workerId);
                return;
            }
            scheduling = true;
        }
        try {
            scheduler.run();
        } catch (Throwable t) {
            log.error("Path {} stopped: its scheduler failed: {}", this, t.toString(), t);
            fail();
        }
    }

    /** A child failed: log it once, stop this path (without the failed shard's checkpoint), tell the daemon. */
    private void childFailed() {
        if (!failedOnce.get()) {
            log.error("Path {} stopped: a record processor hit a non-retryable error (logged above as its "
                    + "processor's error); the daemon's other paths go on. Fix the cause, then start the path "
                    + "again (change its file in a paths directory, or restart the daemon)", this);
        }
        fail();
    }

    private void fail() {
        if (failedOnce.compareAndSet(false, true)) {
            Thread stopper = new Thread(() -> {
                stop();
                state = State.FAILED;
                onFailed.accept(this);
            }, "stop-" + file.getFileName());
            stopper.start();
        }
    }

    /**
     * A graceful stop: processors get shutdownRequested and checkpoint within the grace period, this
     * worker's leases are handed back if they all did, and its leader lock is released. True if complete.
     * Called by the path's own failure, a removed or changed file, or the daemon's exit; runs once.
     */
    synchronized boolean stop() {
        if (stopResult != null) {
            return stopResult;
        }
        stopRequested = true;
        try {
            built.await(graceMillis, TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (scheduler == null) {
            stopResult = true;
        } else {
            boolean done = !scheduling;
            if (scheduling) {
                log.info("Stopping path {} gracefully within {} ms", this, graceMillis);
                try {
                    done = awaitShutdown();
                    log.info("Graceful shutdown of path {} {}", this, done ? "complete" : "incomplete");
                } catch (Exception e) {
                    log.error("Graceful shutdown of path {} did not finish: {}", this, e.toString());
                }
                if (done) {
                    LeaseHandback.release(scheduler.leaseRefresher(), workerId);
                    StartingShare.forget(leaseConfig, workerId);
                }
            }
            if (reaping != null) {
                reaping.cancel(false);
            }
            leaderLock.releaseIfOwnedBy(workerId);
            if (done && children != null) {
                children.executor().shutdownNow();
            }
            stopResult = done;
        }
        if (state == State.RUNNING) {
            state = State.STOPPED;
        }
        return stopResult;
    }

    /**
     * True once the scheduler has shut down, or once every processor has checkpointed and ended after the
     * shutdown began: from then on nothing of this worker writes or checkpoints (lease renewal stops when the
     * scheduler's shutdown starts), and KCL 3.1 would only wait out failoverTimeMillis for consumers whose
     * processors have ended. A processor whose child failed counts as ended: it passes nothing on any more.
     */
    private boolean awaitShutdown() throws Exception {
        java.util.concurrent.Future<Boolean> shutdown = scheduler.startGracefulShutdown();
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(graceMillis);
        while (System.nanoTime() < deadline) {
            try {
                // KCL 3.1 can leave a processor uncounted after leaseLost although the scheduler has
                // finished shutting down (and the processor checkpointed on shutdownRequested).
                return shutdown.get(SHUTDOWN_POLL_MILLIS, TimeUnit.MILLISECONDS) || scheduler.shutdownComplete();
            } catch (java.util.concurrent.TimeoutException notYet) {
                int failed = processors.failed();
                if (processors.running() == failed) {
                    log.info("Every record processor of path {} has ended ({} of them by failing); not waiting "
                            + "for the scheduler's final shutdown", this, failed);
                    return true;
                }
            }
        }
        return false;
    }

    private void build() throws Exception {
        Properties props = PathProperties.load(file);
        MultiLangDaemonConfig daemonConfig = new MultiLangDaemonConfig(file.toString());
        MultiLangDaemonConfiguration kcl = daemonConfig.getMultiLangDaemonConfiguration();
        ClientFactory clients = new ClientFactory(props, kcl);
        workerId = kcl.getWorkerIdentifier();
        applicationName = kcl.getApplicationName();
        graceMillis = kcl.getShutdownGraceMillis() > 0 ? kcl.getShutdownGraceMillis() : 60_000L;
        children = new PathChildProcesses(daemonConfig, environment);
        ShardRecordProcessorFactory processorFactory =
                MultiLangStreamsProcessor.factory(children, processors, this::childFailed);
        DynamoDbAsyncClient leaseClient = clients.leases();
        Optional<String> kinesisStream = PathProperties.string(props, "sourceKinesisStream");

        ConfigsBuilder configs;
        AmazonDynamoDBStreamsAdapterClient adapterClient = null;
        KinesisAsyncClient kinesis = null;
        if (kinesisStream.isPresent()) {
            kinesis = clients.kinesis();
            InitialPositionInStreamExtended position = kcl.getInitialPositionInStreamExtended() != null
                    ? kcl.getInitialPositionInStreamExtended()
                    : InitialPositionInStreamExtended.newInitialPosition(kcl.getInitialPositionInStream() == null
                            ? InitialPositionInStream.TRIM_HORIZON : kcl.getInitialPositionInStream());
            log.info("Replicating Kinesis stream {} with application {} as worker {}",
                    kinesisStream.get(), applicationName, workerId);
            configs = new ConfigsBuilder(new SingleStreamTracker(kinesisStream.get(), position), applicationName,
                    kinesis, leaseClient, clients.cloudWatch(), workerId, processorFactory);
        } else {
            String sourceTable = PathProperties.required(props, "sourceTable");
            DynamoDbStreamsClient streams = clients.streams();
            // `replicator run` names the stream it checked, and the processors version records with its
            // label: read that stream, not whichever is newest a moment later.
            String checkedArn = environment.get("REPLICATOR_STREAM_ARN");
            String streamArn = checkedArn != null && !checkedArn.isBlank() ? checkedArn : latestStreamArn(streams, sourceTable);
            log.info("Replicating stream {} of table {} with application {} as worker {}",
                    streamArn, sourceTable, applicationName, workerId);
            adapterClient = new AmazonDynamoDBStreamsAdapterClient(streams, clients.sourceRegion);
            InitialPositionInStream position = kcl.getInitialPositionInStream() == null
                    ? InitialPositionInStream.TRIM_HORIZON
                    : kcl.getInitialPositionInStream();
            configs = new ConfigsBuilder(
                    StreamsSchedulerFactory.createSingleStreamTracker(
                            streamArn, InitialPositionInStreamExtended.newInitialPosition(position)),
                    applicationName, adapterClient, leaseClient, clients.cloudWatch(), workerId, processorFactory);
        }

        CheckpointConfig checkpoint = configs.checkpointConfig();
        CoordinatorConfig coordinator = configs.coordinatorConfig();
        LeaseManagementConfig leases = configs.leaseManagementConfig();
        leaseConfig = leases;
        LifecycleConfig lifecycle = configs.lifecycleConfig();
        MetricsConfig metrics = configs.metricsConfig();
        ProcessorConfig processor = configs.processorConfig();
        applyTunables(kcl, checkpoint, coordinator, leases, lifecycle, metrics, processor);
        // Not a MultiLangDaemon key: how often the scheduler's loop moves each shard consumer to its next
        // state (initialise, process, shut down). Each turn only reads this worker's leases in memory.
        PathProperties.longValue(props, "shardConsumerDispatchPollIntervalMillis")
                .ifPresent(coordinator::shardConsumerDispatchPollIntervalMillis);
        if (kcl.getMetricsLevel() == MetricsLevel.NONE) {
            metrics.metricsFactory(new NullMetricsFactory());
        }

        if (kinesis != null) {
            PollingConfig polling = new PollingConfig(kinesisStream.get(), kinesis);
            PathProperties.integer(props, "maxRecords").ifPresent(polling::maxRecords);
            PathProperties.longValue(props, "idleTimeBetweenReadsInMillis").ifPresent(polling::idleTimeBetweenReadsInMillis);
            RetrievalConfig retrieval = configs.retrievalConfig().retrievalSpecificConfig(polling);
            scheduler = new Scheduler(checkpoint, coordinator, leases, lifecycle, metrics, processor, retrieval);
        } else {
            DynamoDBStreamsPollingConfig polling = new DynamoDBStreamsPollingConfig(adapterClient);
            PathProperties.integer(props, "maxRecords").ifPresent(polling::maxRecords);
            PathProperties.longValue(props, "idleTimeBetweenReadsInMillis").ifPresent(polling::idleTimeBetweenReadsInMillis);
            RetrievalConfig retrieval = configs.retrievalConfig().retrievalSpecificConfig(polling);
            scheduler = StreamsSchedulerFactory.createScheduler(
                    checkpoint, coordinator, leases, lifecycle, metrics, processor, retrieval, adapterClient);
        }
        // Never below a heartbeat period and a half, or a live leader could lose its lock between heartbeats.
        long staleAfter = Math.max(45_000L, PathProperties.longValue(props, "staleLeaderLockMillis")
                .orElse(StaleLeaderLockReaper.STALE_AFTER_MILLIS));
        leaderLock = new StaleLeaderLockReaper(leaseClient, coordinator.coordinatorStateTableConfig().tableName(), staleAfter);
        reaping = reaperExecutor.scheduleWithFixedDelay(
                leaderLock, 0, Math.max(1_000L, staleAfter / 10), TimeUnit.MILLISECONDS);
    }

    /** Applies the MultiLangDaemon's KCL settings (failoverTimeMillis, ...) to our configs, as it does itself. */
    private static void applyTunables(MultiLangDaemonConfiguration kcl, Object... configObjects) {
        Map<Class<?>, Object> byClass = new HashMap<>();
        for (Object config : configObjects) {
            byClass.put(config.getClass(), config);
        }
        ConfigurationSettableUtils.resolveFields(kcl, byClass, new HashSet<>(byClass.keySet()), null);
        LeaseManagementConfig leases = (LeaseManagementConfig) byClass.get(LeaseManagementConfig.class);
        ConfigurationSettableUtils.resolveFields(
                kcl.getGracefulLeaseHandoffConfigBean(), leases.gracefulLeaseHandoffConfig());
        ConfigurationSettableUtils.resolveFields(
                kcl.getWorkerUtilizationAwareAssignmentConfigBean(), leases.workerUtilizationAwareAssignmentConfig());
        ConfigurationSettableUtils.resolveFields(
                kcl.getWorkerMetricStatsTableConfigBean(),
                leases.workerUtilizationAwareAssignmentConfig().workerMetricsTableConfig());
        CoordinatorConfig coordinator = (CoordinatorConfig) byClass.get(CoordinatorConfig.class);
        ConfigurationSettableUtils.resolveFields(
                kcl.getCoordinatorStateTableConfigBean(), coordinator.coordinatorStateTableConfig());
    }

    private static Optional<String> leaseTableOf(Path file) {
        try {
            return PathProperties.string(PathProperties.load(file), "applicationName");
        } catch (java.io.IOException e) {
            return Optional.empty();  // build() reports the unreadable file when the path starts
        }
    }

    /** The table's newest stream: stream labels are creation timestamps, so the greatest label is the newest. */
    private static String latestStreamArn(DynamoDbStreamsClient streams, String table) {
        return streams.listStreams(r -> r.tableName(table)).streams().stream()
                .max(Comparator.comparing(Stream::streamLabel))
                .map(Stream::streamArn)
                .orElseThrow(() -> new IllegalStateException("table " + table + " has no stream: enable one with "
                        + "StreamViewType NEW_AND_OLD_IMAGES"));
    }
}
