package replicator.daemon;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import software.amazon.kinesis.common.StreamConfig;
import software.amazon.kinesis.coordinator.Scheduler;
import software.amazon.kinesis.leases.LeaseRefresher;
import software.amazon.kinesis.leases.ShardSyncTaskManager;
import software.amazon.kinesis.metrics.NullMetricsScope;

/**
 * Creates a new path's leases before the scheduler starts, with the adapter's own shard syncer.
 *
 * <p>Left to itself, KCL 3's Scheduler waits a random 1 to 30 s while the lease table is empty before one
 * worker runs the first shard sync (so that a large fleet starting at once does not list the shards from
 * every worker). The wait cannot be configured, and for the few workers of a replication path it is pure
 * start-up delay. So when the lease table is empty this runs the very code KCL would run then (the shard
 * sync task manager's syncer, the adapter's DynamoDBStreamsShardSyncer, with the path's initial position),
 * only without the wait; the Scheduler then finds leases and skips its wait and its own sync. Lease
 * creation is conditional, so workers of one path that start together each list the shards once and
 * create every lease once between them.
 */
final class InitialLeases {
    private static final Logger log = LoggerFactory.getLogger(InitialLeases.class);
    private static final long SECONDS_BETWEEN_POLLS = 1;
    private static final long TABLE_TIMEOUT_SECONDS = 600;

    private InitialLeases() {}

    /**
     * Creates the lease table if needed and, if it holds no lease, the leases of every stream of the
     * scheduler. Any failure is logged and left to KCL, which then creates them itself after its wait.
     */
    static void createIfEmpty(Scheduler scheduler) {
        try {
            LeaseRefresher leases = scheduler.leaseRefresher();
            if (leases.createLeaseTableIfNotExists()) {
                log.info("Created lease table {}", scheduler.applicationName());
            }
            if (!leases.waitUntilLeaseTableExists(SECONDS_BETWEEN_POLLS, TABLE_TIMEOUT_SECONDS)
                    || !leases.isLeaseTableEmpty()) {
                return;
            }
            for (StreamConfig stream : scheduler.currentStreamConfigMap().values()) {
                ShardSyncTaskManager sync = scheduler.shardSyncTaskManagerProvider().apply(stream);
                sync.hierarchicalShardSyncer().checkAndCreateLeaseForNewShards(
                        sync.shardDetector(), leases, sync.initialPositionInStream(), new NullMetricsScope(),
                        sync.ignoreUnexpectedChildShards(), true);
                log.info("Created the leases of new path {} from {}", stream.streamIdentifier(),
                        sync.initialPositionInStream().getInitialPositionInStream());
            }
        } catch (Exception e) {
            log.warn("Could not create the new path's leases ahead of KCL, which will after its 1-30 s wait: {}",
                    e.toString());
        }
    }
}
