package replicator.daemon;

import java.net.URI;
import java.util.Optional;
import java.util.Properties;
import software.amazon.awssdk.auth.credentials.AwsCredentialsProvider;
import software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.cloudwatch.CloudWatchAsyncClient;
import software.amazon.awssdk.services.cloudwatch.CloudWatchAsyncClientBuilder;
import software.amazon.awssdk.services.dynamodb.DynamoDbAsyncClient;
import software.amazon.awssdk.services.dynamodb.DynamoDbAsyncClientBuilder;
import software.amazon.awssdk.services.dynamodb.streams.DynamoDbStreamsClient;
import software.amazon.awssdk.services.dynamodb.streams.DynamoDbStreamsClientBuilder;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClientBuilder;
import software.amazon.kinesis.common.KinesisClientUtil;
import software.amazon.kinesis.multilang.config.MultiLangDaemonConfiguration;

/**
 * Every AWS client one path's scheduler uses, built in this one place from the path's properties: the
 * source's DynamoDB Streams or Kinesis client, the lease table's DynamoDB client and CloudWatch's.
 *
 * <p>Endpoints: sourceStreamsEndpoint (else sourceEndpoint) for DynamoDB Streams; kinesisEndpoint (else
 * sourceEndpoint) for Kinesis; dynamoDBEndpoint, else kclEndpoint, else sourceEndpoint for the lease table;
 * cloudWatchEndpoint (else cloudWatchClient.endpointOverride) for metrics. The lease table is in regionName
 * (else kclRegion, else sourceRegion). Credentials: each side's role or profile ({@link PathCredentials}),
 * assumed from the file's AwsCredentialsProvider if it names one, else from the SDK's default chain.
 */
final class ClientFactory {
    private final Properties props;
    private final AwsCredentialsProvider credentials;
    final Region sourceRegion;
    final Region kclRegion;

    ClientFactory(Properties props, MultiLangDaemonConfiguration kcl) {
        this.props = props;
        this.credentials = kcl.getKinesisCredentialsProvider().isDirty()
                ? kcl.getKinesisCredentialsProvider().build(AwsCredentialsProvider.class)
                : DefaultCredentialsProvider.create();
        this.sourceRegion = Region.of(PathProperties.required(props, "sourceRegion"));
        this.kclRegion = Region.of(props.getProperty("regionName", props.getProperty("kclRegion", sourceRegion.id())).trim());
    }

    DynamoDbStreamsClient streams() {
        DynamoDbStreamsClientBuilder builder =
                DynamoDbStreamsClient.builder().region(sourceRegion)
                        .credentialsProvider(PathCredentials.forSide(props, "source", credentials));
        endpoint("sourceStreamsEndpoint").or(() -> endpoint("sourceEndpoint")).ifPresent(builder::endpointOverride);
        return builder.build();
    }

    /**
     * KCL's Kinesis client (HTTP/2, as KCL requires). Against an endpoint override the SDK's CBOR is turned
     * off, JVM-wide: the local server cannot read it, and AWS's Kinesis reads the JSON it then sends.
     */
    KinesisAsyncClient kinesis() {
        KinesisAsyncClientBuilder builder =
                KinesisAsyncClient.builder().region(sourceRegion)
                        .credentialsProvider(PathCredentials.forSide(props, "source", credentials));
        Optional<URI> endpoint = endpoint("kinesisEndpoint").or(() -> endpoint("sourceEndpoint"));
        endpoint.ifPresent(uri -> {
            System.setProperty("aws.cborEnabled", "false");
            builder.endpointOverride(uri);
        });
        return KinesisClientUtil.createKinesisAsyncClient(builder);
    }

    DynamoDbAsyncClient leases() {
        DynamoDbAsyncClientBuilder builder =
                DynamoDbAsyncClient.builder().region(kclRegion)
                        .credentialsProvider(PathCredentials.forSide(props, "kcl", credentials));
        endpoint("dynamoDBEndpoint").or(() -> endpoint("kclEndpoint")).or(() -> endpoint("sourceEndpoint"))
                .ifPresent(builder::endpointOverride);
        return builder.build();
    }

    CloudWatchAsyncClient cloudWatch() {
        CloudWatchAsyncClientBuilder builder =
                CloudWatchAsyncClient.builder().region(kclRegion)
                        .credentialsProvider(PathCredentials.forSide(props, "cloudWatch", credentials));
        endpoint("cloudWatchEndpoint").or(() -> endpoint("cloudWatchClient.endpointOverride"))
                .ifPresent(builder::endpointOverride);
        return builder.build();
    }

    private Optional<URI> endpoint(String key) {
        return PathProperties.string(props, key).map(URI::create);
    }
}
