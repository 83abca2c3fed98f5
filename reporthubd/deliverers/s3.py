"""S3 (and S3-compatible) delivery with aioboto3.

delivery_config keys:
- `bucket` (required), `key` (template, default `{file_name}`), `region`, `endpoint_url` (for
  S3-compatible stores), `access_key_id` / `secret_access_key` (inline or references; absent: the
  default credential chain).
- `sse`: `AES256` or `aws:kms` (with `kms_key_id`); `storage_class`; `content_type` (default: the
  file's media type). Object metadata always carries `execution-id`, `config-id` and `sha256`.
- `multipart_threshold_mb` (default 16): larger files go up in 8 MiB parts, read from disk one
  part at a time; a failed upload is aborted.
- `presign_seconds`: when set, a presigned GET URL valid that long is recorded with the attempt
  (`details.presigned_url`) and offered to email/webhook deliveries of the same execution.
- `timeout_seconds` (default 60) for connecting and each read.

After the upload the object's size is checked with a HEAD request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from reporthubd.deliverers import templating
from reporthubd.deliverers.base import Attempt, AttemptResult, Deliverer, DeliveryError
from reporthubd.deliverers.common import (
    Options,
    describe,
    is_certificate_error,
    ok,
    open_for_reading,
    permanent,
    retryable,
)

MB = 1024 * 1024
PART_SIZE = 8 * MB  # S3's minimum is 5 MiB; one part is in memory at a time
PERMANENT_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "InvalidBucketName",
    "AllAccessDisabled",
    "InvalidArgument",
    "InvalidRequest",
    "KMS.NotFoundException",
    "InvalidStorageClass",
    "AccountProblem",
    "403",
    "404",
}


class S3Deliverer(Deliverer):
    def _client_settings(self) -> tuple[Options, dict[str, Any], dict[str, Any]]:
        options = Options(self.delivery.delivery_config, "delivery_config")
        session_args: dict[str, Any] = {}
        key_id = options.secret("access_key_id")
        secret = options.secret("secret_access_key")
        if bool(key_id) != bool(secret):
            raise DeliveryError("delivery_config: access_key_id and secret_access_key go together")
        if key_id:
            session_args |= {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
        if region := options.text("region"):
            session_args["region_name"] = region
        timeout = options.number("timeout_seconds", 60.0)
        client_args: dict[str, Any] = {
            "config": Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": 1, "mode": "standard"},
                signature_version="s3v4",
            )
        }
        if endpoint := options.text("endpoint_url"):
            client_args["endpoint_url"] = endpoint
        return options, session_args, client_args

    def _location(self, attempt: Attempt, options: Options) -> tuple[str, str]:
        bucket = options.required("bucket")
        rendered = templating.render(
            options.text("key", "{file_name}") or "{file_name}",
            templating.attempt_variables(attempt),
            what="key",
        )
        key = str(templating.safe_relative_path(rendered, what="key"))
        if not key or key == ".":
            raise DeliveryError("key: renders to an empty object key")
        return bucket, key

    async def deliver(self, attempt: Attempt) -> AttemptResult:
        file = attempt.job.file
        bucket_hint = str(self.delivery.delivery_config.get("bucket", ""))
        if file is None:
            return permanent(f"s3://{bucket_hint}", "no file to deliver")
        try:
            options, session_args, client_args = self._client_settings()
            bucket, key = self._location(attempt, options)
            extra = self._object_args(options, attempt)
            threshold = options.number("multipart_threshold_mb", 16.0) * MB
            presign = options.integer("presign_seconds", 0)
        except DeliveryError as exc:
            return permanent(f"s3://{bucket_hint}", str(exc))
        target = f"s3://{bucket}/{key}"
        details: dict[str, Any] = {"bucket": bucket, "key": key}
        try:
            session = aioboto3.Session(**session_args)
            async with session.client("s3", **client_args) as s3:
                if file.size > threshold:
                    await _multipart(
                        s3, bucket, key, file.path, PART_SIZE, extra, confirm=attempt.confirm
                    )
                    details["multipart"] = True
                else:
                    body = await asyncio.to_thread(file.path.read_bytes)
                    await attempt.confirm("putting the object")
                    await s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)
                head = await s3.head_object(Bucket=bucket, Key=key)
                if int(head["ContentLength"]) != file.size:
                    return retryable(
                        target,
                        f"size check failed: stored {head['ContentLength']} bytes, "
                        f"sent {file.size}",
                    )
                details["size"] = file.size
                if head.get("ETag"):
                    details["etag"] = str(head["ETag"]).strip('"')
                if presign > 0:
                    details["presigned_url"] = await s3.generate_presigned_url(
                        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=presign
                    )
                    details["presigned_expires_at"] = (
                        datetime.now(UTC) + timedelta(seconds=presign)
                    ).isoformat()
        except ClientError as exc:
            return _classify_client_error(target, exc)
        except NoCredentialsError:
            return permanent(target, "no AWS credentials found (configure keys or the chain)")
        except (BotoCoreError, OSError, TimeoutError) as exc:
            return _transport_failure(target, exc)
        return ok(target, **details)

    def _object_args(self, options: Options, attempt: Attempt) -> dict[str, Any]:
        file = attempt.job.file
        assert file is not None
        extra: dict[str, Any] = {
            "ContentType": options.text("content_type", file.media_type) or file.media_type,
            "Metadata": {
                "execution-id": attempt.job.execution_id,
                "config-id": str(attempt.job.config.id),
                "sha256": file.sha256,
            },
        }
        sse = options.text("sse")
        if sse:
            if sse not in {"AES256", "aws:kms"}:
                raise DeliveryError("delivery_config.sse: must be AES256 or aws:kms")
            extra["ServerSideEncryption"] = sse
            if kms := options.text("kms_key_id"):
                if sse != "aws:kms":
                    raise DeliveryError("delivery_config.kms_key_id: needs sse aws:kms")
                extra["SSEKMSKeyId"] = kms
        if storage_class := options.text("storage_class"):
            extra["StorageClass"] = storage_class
        return extra

    async def test(self) -> AttemptResult:
        bucket_hint = str(self.delivery.delivery_config.get("bucket", ""))
        target = f"s3://{bucket_hint}"
        try:
            options, session_args, client_args = self._client_settings()
            bucket = options.required("bucket")
            session = aioboto3.Session(**session_args)
            async with session.client("s3", **client_args) as s3:
                await s3.head_bucket(Bucket=bucket)
        except DeliveryError as exc:
            return permanent(target, str(exc))
        except ClientError as exc:
            return _classify_client_error(target, exc)
        except NoCredentialsError:
            return permanent(target, "no AWS credentials found (configure keys or the chain)")
        except (BotoCoreError, OSError, TimeoutError) as exc:
            return _transport_failure(target, exc)
        return ok(target)


def _transport_failure(target: str, exc: BaseException) -> AttemptResult:
    if is_certificate_error(exc):
        return permanent(target, f"TLS certificate not verified: {describe(exc)}")
    return retryable(target, f"S3 request failed: {describe(exc)}")


async def _multipart(
    s3: Any,
    bucket: str,
    key: str,
    path: Any,
    part_size: int,
    extra: dict[str, Any],
    *,
    confirm: Callable[[str], Awaitable[None]],
) -> None:
    upload = await s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)
    upload_id = upload["UploadId"]
    parts = []
    try:
        handle = await open_for_reading(path)
        try:
            number = 1
            while chunk := await asyncio.to_thread(handle.read, part_size):
                answer = await s3.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                )
                parts.append({"ETag": answer["ETag"], "PartNumber": number})
                number += 1
        finally:
            handle.close()  # on the loop: an awaited close could itself be cancelled
        await confirm("completing the multipart upload")
        await s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        # The upload already failed; the abort is best effort.
        with contextlib.suppress(Exception):
            await asyncio.shield(
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            )
        raise


def _classify_client_error(target: str, exc: ClientError) -> AttemptResult:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    message = f"S3 {code or status}: {error.get('Message') or describe(exc)}"
    if code in {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"}:
        return retryable(target, message)
    if code in PERMANENT_CODES or 400 <= status < 500:
        return permanent(target, message)
    return retryable(target, message)
