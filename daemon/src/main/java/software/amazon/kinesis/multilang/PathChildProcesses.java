package software.amazon.kinesis.multilang;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import software.amazon.kinesis.multilang.config.MultiLangDaemonConfiguration;
import software.amazon.kinesis.processor.ShardRecordProcessor;

/**
 * KCL's own MultiLang record processor, spawned with one path's environment, and reporting a child's
 * failure to that path instead of exiting the JVM.
 *
 * <p>KCL's MultiLangRecordProcessorFactory starts every child with the JVM's environment, and its processor
 * calls System.exit(1) when a child fails. With several paths in one JVM each path's children must know
 * their own properties file (REPLICATOR_PROPERTIES) and stream, and one path's failure must stop that path
 * alone. This class lives in KCL's package because the processor's constructor and its exit() are
 * package-private; everything else (the protocol, the child's stderr drained into our log) is KCL's code.
 */
public final class PathChildProcesses {
    private final String[] command;
    private final Map<String, String> environment;
    private final ExecutorService executor;
    private final MultiLangDaemonConfiguration configuration;
    private final ObjectMapper objectMapper = new ObjectMapper();

    public PathChildProcesses(MultiLangDaemonConfig daemonConfig, Map<String, String> environment) {
        this.command = daemonConfig.getRecordProcessorFactory().getCommandArray();
        this.environment = Map.copyOf(environment);
        this.executor = daemonConfig.getExecutorService();
        this.configuration = daemonConfig.getMultiLangDaemonConfiguration();
    }

    /** A processor whose child runs with this path's environment; {@code onChildFailure} replaces the JVM's exit. */
    public ShardRecordProcessor create(Runnable onChildFailure) {
        ProcessBuilder builder = new ProcessBuilder(command);
        builder.environment().putAll(environment);
        return new MultiLangShardRecordProcessor(builder, executor, objectMapper, configuration) {
            @Override
            void exit() {
                onChildFailure.run();
            }
        };
    }

    /** The executor running this path's children's stdin/stdout/stderr tasks; shut down with the path. */
    public ExecutorService executor() {
        return executor;
    }
}
