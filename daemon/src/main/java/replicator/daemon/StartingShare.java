package replicator.daemon;

import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import software.amazon.awssdk.services.dynamodb.model.ResourceInUseException;
import software.amazon.awssdk.services.dynamodb.model.ResourceNotFoundException;
import software.amazon.kinesis.coordinator.assignment.LeaseAssignmentManager;
import software.amazon.kinesis.leases.Lease;
import software.amazon.kinesis.leases.LeaseManagementConfig;
import software.amazon.kinesis.leases.LeaseRefresher;
import software.amazon.kinesis.retrieval.kpl.ExtendedSequenceNumber;
import software.amazon.kinesis.worker.metricstats.WorkerMetricStats;
import software.amazon.kinesis.worker.metricstats.WorkerMetricStatsDAO;

/**
 * Takes a starting worker's fair share of its path's unowned leases itself, before its scheduler starts.
 *
 * <p>Why: KCL 3 assigns leases only from the leader's assignment pass ({@code leaseAssignmentIntervalMillis},
 * 20 s by default), and only to workers whose utilisation report it has seen. So with AWS's settings a new
 * path, or a path restarted after a graceful stop (whose leases {@link LeaseHandback} left unowned), waits
 * up to 20 s more for its first record. A worker that finds unowned leases at start takes some of them
 * at once, as KCL's own lease taker did before KCL 3, and leaves balancing to the leader.
 *
 * <p>Why it is safe with several workers:
 * <ul>
 *   <li>Each take is KCL's conditional {@code takeLease} (the lease counter must not have moved), so a
 *       lease is taken by one worker only, and never from under the leader's own assignment.
 *   <li>Only leases nobody owns are taken (no owner, no graceful hand-off pending), never a live worker's
 *       or an expired one's: those stay the leader's to move.
 *   <li>A worker takes at most its share: the path's unfinished leases divided by the workers it can see
 *       (those reporting to KCL's worker-metrics table, those owning a lease, and itself), rounded up.
 *       So that workers starting together see each other, each first announces itself in that table, as
 *       KCL's reporter does about two seconds later (an entry without measurements, which KCL's leader
 *       reads as a worker without worker metrics), then waits {@link #SETTLE_MILLIS} before counting.
 *   <li>Workers that start further apart than that: the first takes every lease, as KCL 3 would give
 *       every lease to the only worker it had a report from; the later ones get leases when the leader
 *       balances, as in KCL 3.
 *   <li>The leases are taken before the scheduler starts, so its lease renewer finds them as its own at
 *       once (and renews them) and its consumers start on them; a take that loses a race is skipped.
 * </ul>
 *
 * <p>What it costs: one write to the worker-metrics table, one Scan of it and of the lease table, and
 * one conditional write per lease taken, at each start; and {@link #SETTLE_MILLIS} of the start itself.
 */
final class StartingShare {
    private static final Logger log = LoggerFactory.getLogger(StartingShare.class);
    /** How long a starting worker waits after announcing itself for workers that start at the same moment. */
    static final long SETTLE_MILLIS = 1_500L;
    /** How long a worker that lost the race to create the worker-metrics table waits for the winner's. */
    private static final long TABLE_RACE_MILLIS = 30_000L;
    private static final long TABLE_RACE_POLL_MILLIS = 200L;

    private final LeaseManagementConfig config;
    private final String workerId;
    private final WorkerMetricStatsDAO workers;
    private final long announcedNanos;

    private StartingShare(LeaseManagementConfig config, String workerId, WorkerMetricStatsDAO workers) {
        this.config = config;
        this.workerId = workerId;
        this.workers = workers;
        this.announcedNanos = System.nanoTime();
    }

    /**
     * Announces this worker in the path's worker-metrics table (created if need be), as early as possible,
     * so that the settling time runs while the rest of the start does. Null if it could not: then no lease
     * is taken at start, and KCL's leader assigns them all at its next pass.
     */
    static StartingShare announce(LeaseManagementConfig config, String workerId) {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(TABLE_RACE_MILLIS);
        boolean waited = false;
        while (true) {
            try {
                WorkerMetricStatsDAO workers = workerMetrics(config);
                workers.initialize();
                workers.updateMetrics(WorkerMetricStats.builder()
                        .workerId(workerId)
                        .lastUpdateTime(Instant.now().getEpochSecond())
                        .metricStats(Map.of())
                        .operatingRange(Map.of())
                        .build());
                return new StartingShare(config, workerId, workers);
            } catch (Exception e) {
                // Workers of a new path starting together race to create the worker-metrics table: the
                // losers' create is refused (ResourceInUse) or their write finds it still being created
                // (ResourceNotFound). Both pass once the winner's table is there: try again until then.
                if (isTableRace(e) && System.nanoTime() < deadline) {
                    if (!waited) {
                        log.info("Worker {} waits for the worker-metrics table another worker is creating: {}",
                                workerId, e.toString());
                        waited = true;
                    }
                    try {
                        Thread.sleep(TABLE_RACE_POLL_MILLIS);
                    } catch (InterruptedException interrupted) {
                        Thread.currentThread().interrupt();
                        return null;
                    }
                    continue;
                }
                log.warn("Could not announce worker {} at start, so it takes no lease itself; KCL's leader "
                        + "assigns them at its next pass: {}", workerId, e.toString());
                return null;
            }
        }
    }

    private static boolean isTableRace(Throwable e) {
        for (Throwable cause = e; cause != null; cause = cause.getCause()) {
            if (cause instanceof ResourceInUseException || cause instanceof ResourceNotFoundException) {
                return true;
            }
        }
        return false;
    }

    /** Waits out the rest of the settling time, then takes this worker's share of unowned leases. Never throws. */
    void take(LeaseRefresher leases) {
        try {
            long settled = SETTLE_MILLIS - TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - announcedNanos);
            if (settled > 0) {
                Thread.sleep(settled);
            }
            // Live as KCL's leader judges it (reported within two reporting periods), and never less than
            // twice the settling time, so that a peer's announcement made as this one's is still counted.
            long liveMillis = Math.max(2 * SETTLE_MILLIS,
                    LeaseAssignmentManager.DEFAULT_NO_OF_SKIP_STAT_FOR_DEAD_WORKER_THRESHOLD
                            * config.workerUtilizationAwareAssignmentConfig().workerMetricsReporterFreqInMillis());
            long freshSince = Instant.now().getEpochSecond() - liveMillis / 1000 - 1;
            Set<String> seen = workers.getAllWorkerMetricStats().stream()
                    .filter(w -> w.getLastUpdateTime() != null && w.getLastUpdateTime() >= freshSince)
                    .map(WorkerMetricStats::getWorkerId)
                    .collect(Collectors.toCollection(HashSet::new));
            List<Lease> open = leases.listLeases().stream()
                    .filter(lease -> !ExtendedSequenceNumber.SHARD_END.equals(lease.checkpoint()))
                    .collect(Collectors.toList());
            List<Lease> unowned = new ArrayList<>();
            int mine = 0;
            for (Lease lease : open) {
                String owner = lease.actualOwner();
                if (owner == null) {
                    unowned.add(lease);
                } else {
                    seen.add(owner);
                    mine += workerId.equals(owner) ? 1 : 0;
                }
            }
            seen.add(workerId);
            int share = (open.size() + seen.size() - 1) / seen.size();
            int wanted = share - mine;
            // Each worker tries the leases in an order of its own, so that workers taking together seldom
            // race for the same lease.
            unowned.sort(Comparator.comparingInt(lease -> (workerId + "/" + lease.leaseKey()).hashCode()));
            int taken = 0;
            for (Lease lease : unowned) {
                if (taken >= wanted) {
                    break;
                }
                if (leases.takeLease(lease, workerId)) {
                    taken++;
                }
            }
            log.info("Took {} of {} unowned lease(s) at start (a share of {} lease(s) among {} worker(s) seen); "
                    + "the leader assigns the rest", taken, unowned.size(), open.size(), seen.size());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (Exception e) {
            log.warn("Could not take unowned leases at start; KCL's leader assigns them at its next pass: {}",
                    e.toString());
        }
    }

    /**
     * Deletes a stopped worker's entry in the worker-metrics table, so that a worker starting next does not
     * count it among the live workers for the report's lifetime (two reporting periods). Never throws.
     */
    static void forget(LeaseManagementConfig config, String workerId) {
        try {
            WorkerMetricStatsDAO workers = workerMetrics(config);
            for (WorkerMetricStats entry : workers.getAllWorkerMetricStats()) {
                if (workerId.equals(entry.getWorkerId()) && entry.getLastUpdateTime() != null) {
                    workers.deleteMetrics(entry);
                }
            }
        } catch (Exception e) {
            log.warn("Could not delete the worker-metrics entry of stopped worker {} (it expires by itself): {}",
                    workerId, e.toString());
        }
    }

    private static WorkerMetricStatsDAO workerMetrics(LeaseManagementConfig config) {
        return new WorkerMetricStatsDAO(config.dynamoDBClient(),
                config.workerUtilizationAwareAssignmentConfig().workerMetricsTableConfig(),
                config.workerUtilizationAwareAssignmentConfig().workerMetricsReporterFreqInMillis());
    }
}
