package replicator.daemon;

import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import software.amazon.awssdk.services.dynamodb.DynamoDbAsyncClient;
import software.amazon.awssdk.services.dynamodb.model.AttributeValue;
import software.amazon.awssdk.services.dynamodb.model.ConditionalCheckFailedException;
import software.amazon.awssdk.services.dynamodb.model.GetItemResponse;
import software.amazon.awssdk.services.dynamodb.model.ResourceNotFoundException;

/**
 * Releases a KCL 3 leader lock whose owner has died without releasing it.
 *
 * <p>KCL 3's DynamoDBLockBasedLeaderDecider only takes the leader lock when it is absent or expired, but a
 * lock it reads is never expired on reading, so after a leader is killed (kill -9, OOM) no worker ever leads
 * again and unowned leases are never assigned: awslabs/amazon-kinesis-client issue 1803, open at the time of
 * writing. A live leader's lock client heartbeats, giving the lock item a new recordVersionNumber every
 * 30 s; this task watches that number and, when it has not changed for longer than the lock's lease
 * duration plus a heartbeat, deletes the item on the condition that it is still the same version. A live
 * leader therefore never loses its lock to this task, and a dead one's lock is freed so that the next
 * isLeader check elects a live worker.
 */
final class StaleLeaderLockReaper implements Runnable {
    private static final Logger log = LoggerFactory.getLogger(StaleLeaderLockReaper.class);
    private static final String KEY = "key";
    private static final String LEADER = "Leader";
    private static final String VERSION = "recordVersionNumber";

    /** KCL's leader lock lease (120 s) plus one heartbeat period (30 s). */
    static final long STALE_AFTER_MILLIS = 150_000L;

    private final DynamoDbAsyncClient dynamoDb;
    private final String table;
    private final long staleAfterMillis;
    private String seenVersion;
    private long seenSinceMillis;

    StaleLeaderLockReaper(DynamoDbAsyncClient dynamoDb, String coordinatorStateTable, long staleAfterMillis) {
        this.dynamoDb = dynamoDb;
        this.table = coordinatorStateTable;
        this.staleAfterMillis = staleAfterMillis;
    }

    @Override
    public void run() {
        try {
            check();
        } catch (ExecutionException e) {
            // A new path's coordinator-state table appears only after its first shard sync: no lock to check yet.
            if (!(e.getCause() instanceof ResourceNotFoundException)) {
                log.warn("Could not check the leader lock in {}: {}", table, e.getCause().toString());
            }
        } catch (Exception e) {
            log.warn("Could not check the leader lock in {}: {}", table, e.toString());
        }
    }

    /**
     * On the way out: releases the leader lock if this worker holds it. A graceful shutdown does this
     * itself; after a failed one (a processor's exit) it would otherwise wait for {@link #run()} elsewhere.
     */
    void releaseIfOwnedBy(String workerId) {
        try {
            dynamoDb.deleteItem(b -> b.tableName(table).key(Map.of(KEY, AttributeValue.fromS(LEADER)))
                    .conditionExpression("ownerName = :me")
                    .expressionAttributeValues(Map.of(":me", AttributeValue.fromS(workerId))))
                    .get(10, TimeUnit.SECONDS);
            log.info("Released the leader lock held by this worker ({})", workerId);
        } catch (ExecutionException e) {
            if (!(e.getCause() instanceof ConditionalCheckFailedException)) {
                log.warn("Could not release the leader lock: {}", e.getCause().toString());
            }
        } catch (Exception e) {
            log.warn("Could not release the leader lock: {}", e.toString());
        }
    }

    private void check() throws Exception {
        Map<String, AttributeValue> key = Map.of(KEY, AttributeValue.fromS(LEADER));
        GetItemResponse response = dynamoDb.getItem(b -> b.tableName(table).key(key).consistentRead(true))
                .get(30, TimeUnit.SECONDS);
        AttributeValue version = response.hasItem() ? response.item().get(VERSION) : null;
        long now = System.currentTimeMillis();
        if (version == null) {
            seenVersion = null;
            return;
        }
        if (!version.s().equals(seenVersion)) {
            seenVersion = version.s();
            seenSinceMillis = now;
            return;
        }
        if (now - seenSinceMillis < staleAfterMillis) {
            return;
        }
        AttributeValue owner = response.item().get("ownerName");
        try {
            dynamoDb.deleteItem(b -> b.tableName(table).key(key)
                    .conditionExpression("#v = :v")
                    .expressionAttributeNames(Map.of("#v", VERSION))
                    .expressionAttributeValues(Map.of(":v", version)))
                    .get(30, TimeUnit.SECONDS);
            log.warn("Leader lock of worker {} has not been renewed for {} s: released it so that a live worker "
                    + "can lead (KCL issue 1803)", owner == null ? "?" : owner.s(), (now - seenSinceMillis) / 1000);
        } catch (ExecutionException e) {
            if (!(e.getCause() instanceof ConditionalCheckFailedException)) {
                throw e;
            }
        }
        seenVersion = null;
    }
}
