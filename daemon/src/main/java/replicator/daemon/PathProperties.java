package replicator.daemon;

import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Path;
import java.util.Optional;
import java.util.Properties;

/** Reading a path's properties file: trimmed values, blank meaning unset. */
final class PathProperties {
    private PathProperties() {}

    static Properties load(Path file) throws IOException {
        Properties props = new Properties();
        try (InputStream in = new FileInputStream(file.toFile())) {
            props.load(in);
        }
        return props;
    }

    static Optional<String> string(Properties props, String key) {
        return Optional.ofNullable(props.getProperty(key)).map(String::trim).filter(v -> !v.isEmpty());
    }

    static String required(Properties props, String key) {
        return string(props, key).orElseThrow(() -> new IllegalArgumentException("property " + key + " is required"));
    }

    static Optional<Integer> integer(Properties props, String key) {
        return string(props, key).map(Integer::valueOf);
    }

    static Optional<Long> longValue(Properties props, String key) {
        return string(props, key).map(Long::valueOf);
    }
}
