package replicator.daemon;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The replication daemon: runs one or more replication paths in one JVM, each with its own KCL scheduler
 * ({@link PathWorker}), from standard MultiLangDaemon properties files (which configure KCL and name the
 * record processor to spawn per shard, executableName) with these extra keys:
 *
 * <pre>
 * sourceTable            table whose latest stream is read (a table path)
 * sourceKinesisStream    Kinesis data stream read instead (a Kinesis path)
 * sourceRegion           the source's region (required)
 * sourceEndpoint         endpoint override for the source (optional, e.g. the local server)
 * sourceStreamsEndpoint  DynamoDB Streams endpoint override (optional; default sourceEndpoint)
 * cloudWatchEndpoint     CloudWatch endpoint override (optional)
 * staleLeaderLockMillis  how long a leader lock may go unrenewed before it is released (default 150000, min 45000)
 * shardConsumerDispatchPollIntervalMillis  the scheduler loop's period (KCL's default 1000)
 * </pre>
 *
 * <p>Usage: {@code StreamsMultiLangDaemon FILE...} runs those paths; {@code StreamsMultiLangDaemon --dir DIR}
 * runs every {@code *.properties} in DIR ({@link PathDirectory}) and follows the files added, changed or
 * removed, every 30 s or at once on SIGHUP. `replicator run` checks the paths first and passes, in
 * REPLICATOR_PATHS, each one's processor environment (and the files it refused); a file added later is
 * checked by the same Python code (REPLICATOR_PYTHON -m replicator.kcl.pathset FILE) before it starts.
 *
 * <p>Exit status: after SIGTERM or SIGINT every path stops gracefully, and the daemon exits 0 if each one's
 * stop completed, else 1. A path that fails stops alone; the daemon exits 1 once no path is running and one
 * has failed, so that a supervisor restarts a daemon whose every path failed.
 */
public final class StreamsMultiLangDaemon {
    private static final Logger log = LoggerFactory.getLogger(StreamsMultiLangDaemon.class);
    static final long POLL_SECONDS = 30;

    private static final AtomicBoolean terminationRequested = new AtomicBoolean();
    private final Map<Path, PathWorker> workers = new LinkedHashMap<>();
    private final Semaphore wake = new Semaphore(0);
    private final AtomicBoolean hangUp = new AtomicBoolean();
    private final ScheduledExecutorService reaper = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "stale-leader-lock-reaper");
        t.setDaemon(true);
        return t;
    });

    private StreamsMultiLangDaemon() {}

    public static void main(String[] args) {
        Path dir = null;
        List<Path> files = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            if (args[i].equals("--dir") && i + 1 < args.length) {
                dir = Path.of(args[++i]).toAbsolutePath().normalize();
            } else {
                files.add(Path.of(args[i]).toAbsolutePath().normalize());
            }
        }
        if ((dir == null) == files.isEmpty()) {
            System.err.println("usage: StreamsMultiLangDaemon FILE... | --dir DIR");
            System.exit(2);
        }
        int exitCode;
        try {
            exitCode = new StreamsMultiLangDaemon().run(files, dir);
        } catch (Throwable t) {
            log.error("replication daemon failed: {}", t.toString(), t);
            exitCode = 1;
        }
        System.exit(exitCode);
    }

    private int run(List<Path> files, Path dir) throws Exception {
        Checked checked = Checked.fromEnvironment();
        for (String name : new String[] {"TERM", "INT"}) {
            sun.misc.Signal.handle(new sun.misc.Signal(name), signal -> {
                terminationRequested.set(true);
                System.exit(128 + signal.getNumber());
            });
        }
        Runtime.getRuntime().addShutdownHook(new Thread(this::onExit, "graceful-shutdown"));
        PathDirectory directory = null;
        if (dir != null) {
            directory = new PathDirectory(dir, checked.refused);
            sun.misc.Signal.handle(new sun.misc.Signal("HUP"), signal -> {
                hangUp.set(true);
                wake.release();
            });
            files = directory.initialFiles(checked.environments.keySet());
            log.info("Running the {} path(s) of {}; its files are read again every {} s and on SIGHUP",
                    files.size(), dir, POLL_SECONDS);
        }
        for (Path file : files) {
            start(file, checked.environment(file));
        }
        while (true) {
            wake.tryAcquire(POLL_SECONDS, TimeUnit.SECONDS);
            wake.drainPermits();
            if (directory != null) {
                reconcile(directory, hangUp.getAndSet(false));
            }
            synchronized (workers) {
                boolean running = workers.values().stream().anyMatch(w -> w.state() == PathWorker.State.RUNNING);
                boolean failed = workers.values().stream().anyMatch(w -> w.state() == PathWorker.State.FAILED);
                if (!running && failed) {
                    log.error("Every path of this daemon has stopped, at least one by failing: exiting 1");
                    return 1;
                }
            }
        }
    }

    /**
     * Starts a checked path file, unless another file of this daemon is the same path (one lease table): that
     * would be a second worker of it in this JVM. `replicator run` refuses such files among those it starts
     * with; this refuses a file added later to a paths directory the same way, in one line.
     */
    private void start(Path file, Map<String, String> environment) {
        PathWorker worker = new PathWorker(file, environment, reaper, failed -> wake.release());
        synchronized (workers) {
            for (PathWorker other : workers.values()) {
                if (!other.file.equals(file) && worker.leaseTable.isPresent()
                        && worker.leaseTable.equals(other.leaseTable)) {
                    log.error("Path file {} not started: it is the same path as {} (lease table {}): remove one of "
                            + "the two files", file, other.file, worker.leaseTable.get());
                    return;
                }
            }
            workers.put(file, worker);
        }
        worker.start();
    }

    /**
     * The directory's changes since the last look: removed files' paths stop, added ones start, changed ones
     * restart. On SIGHUP (an operator's request, not the poll) a path that failed is checked and started
     * again too, so that fixing its cause and sending SIGHUP is enough.
     */
    private void reconcile(PathDirectory directory, boolean hangUp) {
        PathDirectory.Changes changes = directory.changes();
        if (hangUp) {
            List<Path> failed;
            synchronized (workers) {
                failed = workers.values().stream().filter(w -> w.state() == PathWorker.State.FAILED)
                        .map(w -> w.file).filter(f -> !changes.removed().contains(f) && !changes.changed().contains(f))
                        .toList();
            }
            for (Path file : failed) {
                log.info("SIGHUP: checking failed path file {} again", file);
                directory.check(file).ifPresent(environment -> {
                    stopAndForget(file, "it is started again");
                    start(file, environment);
                });
            }
        }
        for (Path file : changes.removed()) {
            stopAndForget(file, "its file was removed");
        }
        for (Path file : changes.changed()) {
            stopAndForget(file, "its file changed");
        }
        for (Path file : changes.toStart()) {
            directory.check(file).ifPresent(environment -> start(file, environment));
        }
    }

    private void stopAndForget(Path file, String why) {
        PathWorker worker;
        synchronized (workers) {
            worker = workers.remove(file);
        }
        if (worker != null) {
            log.info("Stopping path {}: {}", worker, why);
            worker.stop();
        }
    }

    /** Any exit: every path still running stops gracefully, side by side. */
    private void onExit() {
        List<PathWorker> all;
        synchronized (workers) {
            all = new ArrayList<>(workers.values());
        }
        log.info("Stopping {} path(s)", all.size());
        AtomicBoolean allDone = new AtomicBoolean(true);
        List<Thread> stops = new ArrayList<>();
        for (PathWorker worker : all) {
            Thread t = new Thread(() -> {
                if (!worker.stop()) {
                    allDone.set(false);
                }
            }, "stop-" + worker.file.getFileName());
            t.start();
            stops.add(t);
        }
        for (Thread t : stops) {
            try {
                t.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        if (terminationRequested.get()) {
            Runtime.getRuntime().halt(allDone.get() ? 0 : 1);
        }
    }

    /** What `replicator run` checked: each path file's processor environment, and the files it refused. */
    static final class Checked {
        final Map<Path, Map<String, String>> environments = new HashMap<>();
        final Map<Path, String> refused = new HashMap<>();

        static Checked fromEnvironment() throws Exception {
            Checked checked = new Checked();
            String json = System.getenv("REPLICATOR_PATHS");
            if (json == null || json.isBlank()) {
                return checked;
            }
            JsonNode root = new ObjectMapper().readTree(json);
            root.path("paths").fields().forEachRemaining(entry -> {
                Map<String, String> env = new HashMap<>();
                entry.getValue().fields().forEachRemaining(e -> env.put(e.getKey(), e.getValue().asText()));
                checked.environments.put(Path.of(entry.getKey()).toAbsolutePath().normalize(), env);
            });
            root.path("refused").fields().forEachRemaining(entry ->
                    checked.refused.put(Path.of(entry.getKey()).toAbsolutePath().normalize(), entry.getValue().asText()));
            return checked;
        }

        /** The file's processor environment; without one from `replicator run`, the JVM's own (one path). */
        Map<String, String> environment(Path file) {
            Map<String, String> env = new HashMap<>(environments.getOrDefault(file, Map.of()));
            env.putIfAbsent("REPLICATOR_PROPERTIES", file.toString());
            return env;
        }
    }
}
