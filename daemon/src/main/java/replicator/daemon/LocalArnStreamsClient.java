package replicator.daemon;

import software.amazon.awssdk.services.dynamodb.model.DescribeStreamRequest;
import software.amazon.awssdk.services.dynamodb.model.DescribeStreamResponse;
import software.amazon.awssdk.services.dynamodb.model.GetRecordsRequest;
import software.amazon.awssdk.services.dynamodb.model.GetRecordsResponse;
import software.amazon.awssdk.services.dynamodb.model.GetShardIteratorRequest;
import software.amazon.awssdk.services.dynamodb.model.GetShardIteratorResponse;
import software.amazon.awssdk.services.dynamodb.model.ListStreamsRequest;
import software.amazon.awssdk.services.dynamodb.model.ListStreamsResponse;
import software.amazon.awssdk.services.dynamodb.model.Stream;
import software.amazon.awssdk.services.dynamodb.streams.DynamoDbStreamsClient;

/**
 * DynamoDB Local names its region "ddblocal" in stream ARNs, which adapter 2.0.1 (the newest 2.x served
 * here) rejects when it turns a lease's stream name back into an ARN; adapter 2.1.0 added that region.
 * This client shows the adapter the same ARNs with the configured source region and restores "ddblocal"
 * on the way to DynamoDB Local. It is used only when the stream's ARN names "ddblocal".
 */
final class LocalArnStreamsClient implements DynamoDbStreamsClient {
    static final String LOCAL_REGION = "ddblocal";

    private final DynamoDbStreamsClient local;
    private final String localPrefix;
    private final String shownPrefix;

    LocalArnStreamsClient(DynamoDbStreamsClient local, String shownRegion) {
        this.local = local;
        this.localPrefix = "arn:aws:dynamodb:" + LOCAL_REGION + ":";
        this.shownPrefix = "arn:aws:dynamodb:" + shownRegion + ":";
    }

    static boolean isLocalArn(String streamArn) {
        return streamArn.startsWith("arn:aws:dynamodb:" + LOCAL_REGION + ":");
    }

    String shown(String arn) {
        return arn != null && arn.startsWith(localPrefix) ? shownPrefix + arn.substring(localPrefix.length()) : arn;
    }

    private String toLocal(String arn) {
        return arn != null && arn.startsWith(shownPrefix) ? localPrefix + arn.substring(shownPrefix.length()) : arn;
    }

    @Override
    public DescribeStreamResponse describeStream(DescribeStreamRequest request) {
        DescribeStreamResponse response = local.describeStream(
                request.toBuilder().streamArn(toLocal(request.streamArn())).build());
        return response.toBuilder()
                .streamDescription(response.streamDescription().toBuilder()
                        .streamArn(shown(response.streamDescription().streamArn())).build())
                .build();
    }

    @Override
    public GetShardIteratorResponse getShardIterator(GetShardIteratorRequest request) {
        return local.getShardIterator(request.toBuilder().streamArn(toLocal(request.streamArn())).build());
    }

    @Override
    public GetRecordsResponse getRecords(GetRecordsRequest request) {
        return local.getRecords(request);
    }

    @Override
    public ListStreamsResponse listStreams(ListStreamsRequest request) {
        ListStreamsResponse response = local.listStreams(
                request.toBuilder().exclusiveStartStreamArn(toLocal(request.exclusiveStartStreamArn())).build());
        return response.toBuilder()
                .streams(response.streams().stream()
                        .map(s -> s.toBuilder().streamArn(shown(s.streamArn())).build())
                        .toArray(Stream[]::new))
                .lastEvaluatedStreamArn(shown(response.lastEvaluatedStreamArn()))
                .build();
    }

    @Override
    public String serviceName() {
        return local.serviceName();
    }

    @Override
    public void close() {
        local.close();
    }
}
