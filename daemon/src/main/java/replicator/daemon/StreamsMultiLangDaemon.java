package replicator.daemon;

import com.amazonaws.services.dynamodbv2.streamsadapter.AmazonDynamoDBStreamsAdapterClient;
import com.amazonaws.services.dynamodbv2.streamsadapter.StreamsSchedulerFactory;
import com.amazonaws.services.dynamodbv2.streamsadapter.polling.DynamoDBStreamsPollingConfig;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import software.amazon.awssdk.auth.credentials.AwsCredentialsProvider;
import software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.cloudwatch.CloudWatchAsyncClient;
import software.amazon.awssdk.services.cloudwatch.CloudWatchAsyncClientBuilder;
import software.amazon.awssdk.services.dynamodb.DynamoDbAsyncClient;
import software.amazon.awssdk.services.dynamodb.DynamoDbAsyncClientBuilder;
import software.amazon.awssdk.services.dynamodb.model.Stream;
import software.amazon.awssdk.services.dynamodb.streams.DynamoDbStreamsClient;
import software.amazon.awssdk.services.dynamodb.streams.DynamoDbStreamsClientBuilder;
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
import software.amazon.kinesis.multilang.config.ConfigurationSettableUtils;
import software.amazon.kinesis.multilang.config.MultiLangDaemonConfiguration;
import software.amazon.kinesis.processor.ProcessorConfig;
import software.amazon.kinesis.retrieval.RetrievalConfig;

/**
 * Runs the KCL MultiLangDaemon over a DynamoDB stream: a standard MultiLangDaemon properties file
 * configures the KCL and names the record processor to spawn per shard (executableName); these extra
 * keys say which stream to read, because the adapter 2.x dropped its own multi-language launcher:
 *
 * <pre>
 * sourceTable            table whose latest stream is read (required)
 * sourceRegion           its region (required)
 * sourceEndpoint         endpoint override for the source (optional, e.g. the local server)
 * sourceStreamsEndpoint  DynamoDB Streams endpoint override (optional; default sourceEndpoint)
 * cloudWatchEndpoint     CloudWatch endpoint override (optional)
 * staleLeaderLockMillis  how long a leader lock may go unrenewed before it is released (default 150000, min 45000)
 * shardConsumerDispatchPollIntervalMillis  the scheduler loop's period (KCL's default 1000)
 * </pre>
 *
 * The lease table is applicationName, in regionName (or kclRegion, or sourceRegion), at dynamoDBEndpoint (or
 * kclEndpoint, or sourceEndpoint) if one is set. Every KCL tunable the
 * MultiLangDaemon understands (failoverTimeMillis, shutdownGraceMillis, maxRecords, ...) applies as usual.
 */
public final class StreamsMultiLangDaemon {
    private static final Logger log = LoggerFactory.getLogger(StreamsMultiLangDaemon.class);

    private static volatile boolean terminationRequested;
    private static final long SHUTDOWN_POLL_MILLIS = 200;

    private StreamsMultiLangDaemon() {}

    public static void main(String[] args) {
        if (args.length != 1) {
            System.err.println("usage: StreamsMultiLangDaemon <properties file>");
            System.exit(2);
        }
        int exitCode;
        try {
            exitCode = run(args[0]);
        } catch (Throwable t) {
            log.error("replication daemon failed: {}", t.toString(), t);
            exitCode = 1;
        }
        System.exit(exitCode);
    }

    static int run(String propertiesFile) throws Exception {
        Properties props = new Properties();
        try (InputStream in = new FileInputStream(propertiesFile)) {
            props.load(in);
        }
        MultiLangDaemonConfig daemonConfig = new MultiLangDaemonConfig(propertiesFile);
        MultiLangDaemonConfiguration kcl = daemonConfig.getMultiLangDaemonConfiguration();

        Region sourceRegion = Region.of(required(props, "sourceRegion"));
        String sourceTable = required(props, "sourceTable");
        Region kclRegion = Region.of(props.getProperty("regionName", props.getProperty("kclRegion", sourceRegion.id())).trim());
        AwsCredentialsProvider credentials = kcl.getKinesisCredentialsProvider().isDirty()
                ? kcl.getKinesisCredentialsProvider().build(AwsCredentialsProvider.class)
                : DefaultCredentialsProvider.create();

        DynamoDbStreamsClientBuilder streamsBuilder = DynamoDbStreamsClient.builder().region(sourceRegion)
                .credentialsProvider(PathCredentials.forSide(props, "source", credentials));
        endpoint(props, "sourceStreamsEndpoint").or(() -> endpoint(props, "sourceEndpoint"))
                .ifPresent(streamsBuilder::endpointOverride);
        DynamoDbStreamsClient streams = streamsBuilder.build();
        // `replicator run` names the stream it checked, and the processors version records with its label:
        // read that stream, not whichever is newest a moment later.
        String checkedArn = System.getenv("REPLICATOR_STREAM_ARN");
        String streamArn = checkedArn != null && !checkedArn.isBlank() ? checkedArn : latestStreamArn(streams, sourceTable);
        log.info("Replicating stream {} of table {} with application {} as worker {}",
                streamArn, sourceTable, kcl.getApplicationName(), kcl.getWorkerIdentifier());

        DynamoDbAsyncClientBuilder leaseBuilder =
                DynamoDbAsyncClient.builder().region(kclRegion)
                        .credentialsProvider(PathCredentials.forSide(props, "kcl", credentials));
        endpoint(props, "dynamoDBEndpoint").or(() -> endpoint(props, "kclEndpoint"))
                .or(() -> endpoint(props, "sourceEndpoint")).ifPresent(leaseBuilder::endpointOverride);
        DynamoDbAsyncClient leaseClient = leaseBuilder.build();
        CloudWatchAsyncClientBuilder cloudWatchBuilder =
                CloudWatchAsyncClient.builder().region(kclRegion)
                        .credentialsProvider(PathCredentials.forSide(props, "cloudWatch", credentials));
        endpoint(props, "cloudWatchEndpoint").ifPresent(cloudWatchBuilder::endpointOverride);

        AmazonDynamoDBStreamsAdapterClient adapterClient = new AmazonDynamoDBStreamsAdapterClient(streams, sourceRegion);
        InitialPositionInStream position = kcl.getInitialPositionInStream() == null
                ? InitialPositionInStream.TRIM_HORIZON
                : kcl.getInitialPositionInStream();
        ConfigsBuilder configs = new ConfigsBuilder(
                StreamsSchedulerFactory.createSingleStreamTracker(
                        streamArn, InitialPositionInStreamExtended.newInitialPosition(position)),
                kcl.getApplicationName(),
                adapterClient,
                leaseClient,
                cloudWatchBuilder.build(),
                kcl.getWorkerIdentifier(),
                MultiLangStreamsProcessor.factory(daemonConfig.getRecordProcessorFactory()));

        CheckpointConfig checkpoint = configs.checkpointConfig();
        CoordinatorConfig coordinator = configs.coordinatorConfig();
        LeaseManagementConfig leases = configs.leaseManagementConfig();
        LifecycleConfig lifecycle = configs.lifecycleConfig();
        MetricsConfig metrics = configs.metricsConfig();
        ProcessorConfig processor = configs.processorConfig();
        applyTunables(kcl, checkpoint, coordinator, leases, lifecycle, metrics, processor);
        // Not a MultiLangDaemon key: how often the scheduler's loop moves each shard consumer to its next
        // state (initialise, process, shut down). Each turn only reads this worker's leases in memory.
        longProperty(props, "shardConsumerDispatchPollIntervalMillis")
                .ifPresent(coordinator::shardConsumerDispatchPollIntervalMillis);
        if (kcl.getMetricsLevel() == MetricsLevel.NONE) {
            metrics.metricsFactory(new NullMetricsFactory());
        }

        DynamoDBStreamsPollingConfig polling = new DynamoDBStreamsPollingConfig(adapterClient);
        intProperty(props, "maxRecords").ifPresent(polling::maxRecords);
        longProperty(props, "idleTimeBetweenReadsInMillis").ifPresent(polling::idleTimeBetweenReadsInMillis);
        RetrievalConfig retrieval = configs.retrievalConfig().retrievalSpecificConfig(polling);

        Scheduler scheduler = StreamsSchedulerFactory.createScheduler(
                checkpoint, coordinator, leases, lifecycle, metrics, processor, retrieval, adapterClient);
        ScheduledExecutorService reaper = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "stale-leader-lock-reaper");
            t.setDaemon(true);
            return t;
        });
        // Never below a heartbeat period and a half, or a live leader could lose its lock between heartbeats.
        long staleAfter = Math.max(45_000L,
                longProperty(props, "staleLeaderLockMillis").orElse(StaleLeaderLockReaper.STALE_AFTER_MILLIS));
        StaleLeaderLockReaper leaderLock = new StaleLeaderLockReaper(
                leaseClient, coordinator.coordinatorStateTableConfig().tableName(), staleAfter);
        reaper.scheduleWithFixedDelay(leaderLock, 0, Math.max(1_000L, staleAfter / 10), TimeUnit.MILLISECONDS);
        long graceMillis = kcl.getShutdownGraceMillis() > 0 ? kcl.getShutdownGraceMillis() : 60_000L;
        for (String name : new String[] {"TERM", "INT"}) {
            sun.misc.Signal.handle(new sun.misc.Signal(name), signal -> {
                terminationRequested = true;
                System.exit(128 + signal.getNumber());
            });
        }
        Runtime.getRuntime().addShutdownHook(new Thread(
                () -> onExit(scheduler, graceMillis, leaderLock, kcl.getWorkerIdentifier()), "graceful-shutdown"));
        InitialLeases.createIfEmpty(scheduler);
        scheduler.run();
        return 0;
    }

    /**
     * Any exit: processors get shutdownRequested and checkpoint within the grace period, this worker's
     * leases are handed back if they all did, and its leader lock is released. After SIGTERM or SIGINT the
     * JVM would exit with 143; a completed graceful shutdown exits 0 instead and an incomplete one 1, so that
     * supervisors (and people) can tell a clean stop from a failed one. Other exits (a processor's failure calls System.exit(1)) keep their status.
     */
    private static void onExit(
            Scheduler scheduler, long graceMillis, StaleLeaderLockReaper leaderLock, String workerId) {
        log.info("Shutting down gracefully within {} ms", graceMillis);
        boolean done = false;
        try {
            done = awaitShutdown(scheduler, graceMillis);
            log.info("Graceful shutdown {}", done ? "complete" : "incomplete");
        } catch (Exception e) {
            log.error("Graceful shutdown did not finish within {} ms: {}", graceMillis, e.toString());
        }
        if (done) {
            LeaseHandback.release(scheduler.leaseRefresher(), workerId);
        }
        leaderLock.releaseIfOwnedBy(workerId);
        if (terminationRequested) {
            Runtime.getRuntime().halt(done ? 0 : 1);
        }
    }

    /**
     * True once the scheduler has shut down, or once every processor has checkpointed and ended after the
     * shutdown began: from then on nothing of this worker writes or checkpoints (lease renewal stops when the
     * scheduler's shutdown starts), and KCL 3.1 would only wait out failoverTimeMillis for consumers whose
     * processors have ended. False if neither happens within the grace period. A processor whose child
     * failed (the exit that started this shutdown) counts as ended: its child has exited without
     * checkpointing and its call never returns, so waiting for it would only wait out the grace period.
     */
    private static boolean awaitShutdown(Scheduler scheduler, long graceMillis) throws Exception {
        java.util.concurrent.Future<Boolean> shutdown = scheduler.startGracefulShutdown();
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(graceMillis);
        while (System.nanoTime() < deadline) {
            try {
                // KCL 3.1 can leave a processor uncounted after leaseLost although the scheduler has
                // finished shutting down (and the processor checkpointed on shutdownRequested).
                return shutdown.get(SHUTDOWN_POLL_MILLIS, TimeUnit.MILLISECONDS) || scheduler.shutdownComplete();
            } catch (java.util.concurrent.TimeoutException notYet) {
                int exiting = MultiLangStreamsProcessor.exiting();
                if (MultiLangStreamsProcessor.running() == exiting) {
                    log.info("Every record processor has ended ({} of them by failing); not waiting for the "
                            + "scheduler's final shutdown", exiting);
                    return true;
                }
            }
        }
        return false;
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

    /** The table's newest stream: stream labels are creation timestamps, so the greatest label is the newest. */
    private static String latestStreamArn(DynamoDbStreamsClient streams, String table) {
        return streams.listStreams(r -> r.tableName(table)).streams().stream()
                .max(Comparator.comparing(Stream::streamLabel))
                .map(Stream::streamArn)
                .orElseThrow(() -> new IllegalStateException("table " + table + " has no stream: enable one with "
                        + "StreamViewType NEW_AND_OLD_IMAGES"));
    }

    private static String required(Properties props, String key) {
        String value = props.getProperty(key);
        if (value == null || value.isBlank()) {
            throw new IllegalArgumentException("property " + key + " is required");
        }
        return value.trim();
    }

    private static java.util.Optional<URI> endpoint(Properties props, String key) {
        return java.util.Optional.ofNullable(props.getProperty(key)).map(String::trim)
                .filter(v -> !v.isEmpty()).map(URI::create);
    }

    private static java.util.Optional<Integer> intProperty(Properties props, String key) {
        return java.util.Optional.ofNullable(props.getProperty(key)).map(String::trim).map(Integer::valueOf);
    }

    private static java.util.Optional<Long> longProperty(Properties props, String key) {
        return java.util.Optional.ofNullable(props.getProperty(key)).map(String::trim).map(Long::valueOf);
    }
}
