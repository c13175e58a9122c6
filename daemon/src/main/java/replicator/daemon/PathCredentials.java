package replicator.daemon;

import java.time.Duration;
import java.util.Optional;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicReference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import software.amazon.awssdk.auth.credentials.AwsCredentials;
import software.amazon.awssdk.auth.credentials.AwsCredentialsProvider;
import software.amazon.awssdk.auth.credentials.ProfileCredentialsProvider;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.sts.StsClient;
import software.amazon.awssdk.services.sts.StsClientBuilder;
import software.amazon.awssdk.services.sts.auth.StsAssumeRoleCredentialsProvider;
import software.amazon.awssdk.services.sts.model.AssumeRoleRequest;

/**
 * The credentials each side of a path is reached with, from the properties keys the Python side writes
 * (replicator.credentials keeps the same rule for the processors, the tools and the Lambda).
 *
 * <p>A side is {@code source} (the stream), {@code kcl} (the lease and checkpoint tables) or
 * {@code cloudWatch} (KCL's metrics). With {@code <side>RoleArn} (and {@code <side>ExternalId}) the side's
 * clients use the SDK's {@link StsAssumeRoleCredentialsProvider}, which renews the session in the background
 * before it expires, so a path runs for months on one-hour sessions. The role is assumed from
 * {@code sourceProfile}'s credentials if one is set, else from the launcher's own provider. {@code kcl} and
 * {@code cloudWatch} without a role of their own use the source's credentials, as their region defaults to
 * the source's. STS is asked at AWS's STS endpoint of the side's region, or at {@code AWS_ENDPOINT_URL_STS}
 * (the SDK reads it) when it is set: never at the side's own endpoint, which serves DynamoDB or CloudWatch
 * (a VPC endpoint, say) and not STS.
 *
 * <p>{@code REPLICATOR_CREDENTIALS_LIFETIME_S} (tests only) renews the session that many seconds after it was
 * issued, by a prefetch and stale time just under the session's one hour: STS refuses shorter sessions.
 */
final class PathCredentials {
    private static final Logger log = LoggerFactory.getLogger(PathCredentials.class);
    static final String LIFETIME_ENV = "REPLICATOR_CREDENTIALS_LIFETIME_S";
    static final String SESSION_NAME = "dynamodb-replicator";
    private static final int SESSION_SECONDS = 3600;

    private PathCredentials() {
    }

    /** The provider for {@code side}'s clients; {@code base} is the launcher's provider for sides without a role. */
    static AwsCredentialsProvider forSide(Properties props, String side, AwsCredentialsProvider base) {
        Optional<String> role = value(props, side + "RoleArn");
        if (role.isEmpty() && !side.equals("source")) {
            return forSide(props, "source", base);
        }
        AwsCredentialsProvider from = value(props, "sourceProfile")
                .<AwsCredentialsProvider>map(ProfileCredentialsProvider::create).orElse(base);
        if (role.isEmpty()) {
            return from;
        }
        StsClientBuilder sts = StsClient.builder().region(region(props, side)).credentialsProvider(from);
        AssumeRoleRequest.Builder request = AssumeRoleRequest.builder().roleArn(role.get())
                .roleSessionName(SESSION_NAME).durationSeconds(SESSION_SECONDS);
        value(props, side + "ExternalId").ifPresent(request::externalId);
        StsAssumeRoleCredentialsProvider.Builder provider = StsAssumeRoleCredentialsProvider.builder()
                .stsClient(sts.build()).refreshRequest(request.build()).asyncCredentialUpdateEnabled(true);
        Optional.ofNullable(System.getenv(LIFETIME_ENV)).filter(v -> !v.isBlank()).map(String::trim)
                .map(Long::valueOf).ifPresent(lifetime -> {
                    Duration early = Duration.ofSeconds(Math.max(1, SESSION_SECONDS - lifetime));
                    provider.prefetchTime(early).staleTime(early);
                });
        log.info("Side {} assumes role {}", side, role.get());
        return new Announced(provider.build(), side, role.get());
    }

    private static Region region(Properties props, String side) {
        String source = value(props, "sourceRegion").orElseThrow();
        if (side.equals("source")) {
            return Region.of(source);
        }
        return Region.of(value(props, "regionName").or(() -> value(props, "kclRegion")).orElse(source));
    }

    private static Optional<String> value(Properties props, String key) {
        return Optional.ofNullable(props.getProperty(key)).map(String::trim).filter(v -> !v.isEmpty());
    }

    /** Logs each new session of the role (never its keys), so that a renewal can be seen in the log. */
    private static final class Announced implements AwsCredentialsProvider, AutoCloseable {
        private final StsAssumeRoleCredentialsProvider delegate;
        private final String side;
        private final String role;
        private final AtomicReference<String> current = new AtomicReference<>();

        Announced(StsAssumeRoleCredentialsProvider delegate, String side, String role) {
            this.delegate = delegate;
            this.side = side;
            this.role = role;
        }

        @Override
        public AwsCredentials resolveCredentials() {
            AwsCredentials credentials = delegate.resolveCredentials();
            String id = credentials.accessKeyId();
            String before = current.getAndSet(id);
            if (!id.equals(before)) {
                log.info("Side {} has a {} session of role {}", side, before == null ? "first" : "renewed", role);
            }
            return credentials;
        }

        @Override
        public void close() {
            delegate.close();
        }
    }
}
