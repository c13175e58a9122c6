package replicator.daemon;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import software.amazon.kinesis.leases.Lease;
import software.amazon.kinesis.leases.LeaseRefresher;

/**
 * Hands a stopped worker's leases back after a complete graceful shutdown.
 *
 * <p>KCL 3 stops a worker without releasing its leases, so they stay owned by a worker that is gone until
 * failoverTimeMillis passes without a renewal: a restarted path, or the other workers of a fleet during a
 * rolling restart, wait that long for its shards. Once every processor has checkpointed and the scheduler
 * has stopped, nothing of this worker renews or checkpoints them any more, so this evicts each one it
 * still owns with KCL's own conditional eviction (only while this worker is still the owner), and the
 * leader assigns them on its next pass. After an incomplete shutdown the leases are left to expire as
 * before, because a processor may still be writing.
 */
final class LeaseHandback {
    private static final Logger log = LoggerFactory.getLogger(LeaseHandback.class);

    private LeaseHandback() {}

    static void release(LeaseRefresher leases, String workerId) {
        try {
            int released = 0;
            for (Lease lease : leases.listLeases()) {
                if (workerId.equals(lease.leaseOwner()) && leases.evictLease(lease)) {
                    released++;
                }
            }
            log.info("Handed back {} lease(s) of worker {}", released, workerId);
        } catch (Exception e) {
            log.warn("Could not hand back the leases of worker {} (they expire after failoverTimeMillis): {}",
                    workerId, e.toString());
        }
    }
}
