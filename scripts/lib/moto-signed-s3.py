"""Prepares a moto server to check S3 request signatures, for the worker's signing test.

Usage: moto-signed-s3.py ENDPOINT BUCKET. While moto still accepts anything, it creates an IAM
user allowed s3:* with one access key, and the bucket; then it switches moto to check every
request's SigV4 signature against IAM. Prints the key id and the secret, one per line: they
exist only inside this throw-away moto server.
"""

import json
import sys
import urllib.request

import boto3

endpoint, bucket = sys.argv[1], sys.argv[2]
anything = dict(
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="setup",
    aws_secret_access_key="setup",
)
iam = boto3.client("iam", **anything)
iam.create_user(UserName="medplat-worker")
iam.put_user_policy(
    UserName="medplat-worker",
    PolicyName="s3",
    PolicyDocument=json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
    ),
)
key = iam.create_access_key(UserName="medplat-worker")["AccessKey"]
boto3.client("s3", **anything).create_bucket(Bucket=bucket)
# From here on every request must be signed by a key IAM knows, and signed correctly.
urllib.request.urlopen(
    urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=b"0",
        method="POST",
        # Not a form, or Flask takes the body away from moto.
        headers={"Content-Type": "text/plain"},
    )
).read()
print(key["AccessKeyId"])
print(key["SecretAccessKey"])
