// Test peer: an agent on the AWS SDK for JavaScript v3 with default client settings, given
// only AWS_ENDPOINT_URL and the grant's key pair. Prints one JSON object with what it saw.
// Every client follows AWS_ENDPOINT_URL; the SQS client additionally sends each call on a
// queue to the queue's URL (useQueueUrlAsEndpoint, on by default).
import { S3Client, PutObjectCommand, GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
import { DynamoDBClient, PutItemCommand, GetItemCommand } from '@aws-sdk/client-dynamodb'
import { SQSClient, GetQueueUrlCommand, SendMessageCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs'
import { Upload } from '@aws-sdk/lib-storage'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'

const out = {}
const region = 'us-east-1'
const s3 = new S3Client({ region, forcePathStyle: true })
await s3.send(new PutObjectCommand({ Bucket: 'reports', Key: 'js/hello.txt', Body: 'hello from js' }))
const got = await s3.send(new GetObjectCommand({ Bucket: 'reports', Key: 'js/hello.txt' }))
out.get = await got.Body.transformToString()
// Multipart through lib-storage: 5 MiB parts, 11 MiB in all.
const big = Buffer.alloc(11 * 1024 * 1024, 7)
await new Upload({ client: s3, params: { Bucket: 'reports', Key: 'js/big.bin', Body: big }, partSize: 5 * 1024 * 1024 }).done()
const bigGot = await s3.send(new GetObjectCommand({ Bucket: 'reports', Key: 'js/big.bin' }))
out.big = (await bigGot.Body.transformToByteArray()).length
const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'reports', Prefix: 'js' }))
out.listed = (listed.Contents ?? []).map((o) => o.Key).sort()
const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: 'reports', Key: 'js/hello.txt' }), { expiresIn: 300 })
out.presigned_host = new URL(url).host
out.presigned = await (await fetch(url)).text()

const ddb = new DynamoDBClient({ region })
await ddb.send(new PutItemCommand({ TableName: 'ledger', Item: { pk: { S: 'js' }, total: { N: '7' } } }))
const item = await ddb.send(new GetItemCommand({ TableName: 'ledger', Key: { pk: { S: 'js' } } }))
out.item = item.Item.total.N

const sqs = new SQSClient({ region })
const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: 'jobs' }))
out.queue_url = QueueUrl
await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: 'from js' }))
const msgs = await sqs.send(new ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 0 }))
out.message = msgs.Messages?.[0]?.Body ?? null

// Outside the grant: denied.
try {
  await ddb.send(new GetItemCommand({ TableName: 'other', Key: { pk: { S: 'x' } } }))
  out.denied = 'allowed'
} catch (e) {
  out.denied = e.name
}
console.log(JSON.stringify(out))
