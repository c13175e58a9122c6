package replicator.daemon;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A paths directory: every regular file named {@code *.properties} not starting with a dot is a path (the
 * rule of replicator/kcl/pathset.py, which `replicator run` applies first). Each file is known by a hash of
 * its content, so a file rewritten with the same text changes nothing, and an edited one restarts its path.
 *
 * <p>A file added or changed is checked, before its path starts, by the same Python code `replicator run`
 * checks paths with (REPLICATOR_PYTHON -m replicator.kcl.pathset FILE), which prints the path's processor
 * environment as JSON or exits 2 with one line naming the problem and the fix. A refused file is logged
 * once and left until it changes again.
 */
final class PathDirectory {
    private static final Logger log = LoggerFactory.getLogger(PathDirectory.class);
    private static final long CHECK_TIMEOUT_SECONDS = 120;

    record Changes(List<Path> removed, List<Path> changed, List<Path> toStart) {}

    private final Path dir;
    private final Map<Path, String> seen = new HashMap<>();
    private final Map<Path, String> refusedAtStart;

    PathDirectory(Path dir, Map<Path, String> refusedAtStart) {
        this.dir = dir;
        this.refusedAtStart = refusedAtStart;
    }

    /** The files `replicator run` checked and passed; those it refused are known too, and not retried until they change. */
    List<Path> initialFiles(Set<Path> checked) {
        List<Path> start = new ArrayList<>();
        for (Map.Entry<Path, String> entry : Optional.ofNullable(scan()).orElse(Map.of()).entrySet()) {
            if (checked.contains(entry.getKey())) {
                start.add(entry.getKey());
                seen.put(entry.getKey(), entry.getValue());
            } else if (refusedAtStart.containsKey(entry.getKey())) {
                seen.put(entry.getKey(), entry.getValue());
            }
        }
        return start;
    }

    /** What changed since the last call: files gone, files whose content changed, and the files to start (changed or new). */
    Changes changes() {
        Map<Path, String> now = scan();
        if (now == null) {
            return new Changes(List.of(), List.of(), List.of());  // nothing is stopped for a listing that failed
        }
        List<Path> removed = new ArrayList<>();
        List<Path> changed = new ArrayList<>();
        List<Path> toStart = new ArrayList<>();
        for (Path file : new ArrayList<>(seen.keySet())) {
            if (!now.containsKey(file)) {
                removed.add(file);
                seen.remove(file);
            }
        }
        for (Map.Entry<Path, String> entry : now.entrySet()) {
            String before = seen.put(entry.getKey(), entry.getValue());
            if (before == null) {
                toStart.add(entry.getKey());
            } else if (!before.equals(entry.getValue())) {
                changed.add(entry.getKey());
                toStart.add(entry.getKey());
            }
        }
        if (!removed.isEmpty() || !toStart.isEmpty()) {
            log.info("Paths directory {}: {} removed, {} changed, {} new", dir, removed.size(), changed.size(),
                    toStart.size() - changed.size());
        }
        return new Changes(removed, changed, toStart);
    }

    /** The file's processor environment from the Python checks, or empty (logged in one line) if it is refused. */
    Optional<Map<String, String>> check(Path file) {
        String python = System.getenv().getOrDefault("REPLICATOR_PYTHON", "python3");
        try {
            Process process = new ProcessBuilder(python, "-m", "replicator.kcl.pathset", file.toString())
                    .redirectErrorStream(false).start();
            process.getOutputStream().close();
            byte[] out = process.getInputStream().readAllBytes();
            byte[] err = process.getErrorStream().readAllBytes();
            if (!process.waitFor(CHECK_TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                process.destroyForcibly();
                log.error("Path file {} not started: its check did not finish within {} s", file, CHECK_TIMEOUT_SECONDS);
                return Optional.empty();
            }
            if (process.exitValue() != 0) {
                String[] lines = new String(err, StandardCharsets.UTF_8).strip().split("\n");
                log.error("Path file {} not started: {}", file, lines[lines.length - 1]);
                return Optional.empty();
            }
            JsonNode env = new ObjectMapper().readTree(out);
            Map<String, String> environment = new HashMap<>();
            env.fields().forEachRemaining(e -> environment.put(e.getKey(), e.getValue().asText()));
            return Optional.of(environment);
        } catch (IOException e) {
            log.error("Path file {} not started: could not run its check with {}: {}", file, python, e.toString());
            return Optional.empty();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return Optional.empty();
        }
    }

    /** The directory's path files and the hash of each one's content; null if the directory cannot be listed. */
    private Map<Path, String> scan() {
        Map<Path, String> files = new TreeMap<>();
        try (Stream<Path> entries = Files.list(dir)) {
            for (Path file : (Iterable<Path>) entries::iterator) {
                String name = file.getFileName().toString();
                if (name.startsWith(".") || !name.endsWith(".properties") || !Files.isRegularFile(file)) {
                    continue;
                }
                try {
                    files.put(file.toAbsolutePath().normalize(), hash(Files.readAllBytes(file)));
                } catch (IOException e) {
                    log.warn("Could not read path file {}: {}", file, e.toString());
                }
            }
        } catch (IOException e) {
            log.warn("Could not list paths directory {} (its paths go on as they were): {}", dir, e.toString());
            return null;
        }
        return files;
    }

    private static String hash(byte[] content) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(content));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
