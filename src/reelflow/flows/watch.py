"""The watcher: objects dropped into a bucket (or a local folder) become one ``ingest`` run each.

Where drops are noticed (a ``DropSource``):

- ``SqsSource``: the bucket's ObjectCreated notifications, delivered to an SQS queue and
  long-polled. Keys in events are URL-encoded (``+`` for a space) and are decoded here;
  ``s3:TestEvent`` and events outside the watched prefix are dropped (their messages deleted).
  A message is deleted only once every drop in it has a flow run the server accepted: if the
  watcher dies before that, the message comes back after its visibility timeout.
- ``ListingSource``: no queue; the prefix is listed every ``poll_s``. A persisted seen-set
  (``watch.state_dir``) of key and ETag keeps a restart from starting runs again.
- ``FolderSource``: a local folder; a file is picked up once its size and mtime stayed the same
  over ``stable_polls`` polls (a copy in progress keeps growing). Hidden files and folders (the
  temporaries of rsync and most upload tools) are skipped. Persisted seen-set too.

What happens to a drop (``Watcher``):

- Only names ending in one of ``watch.media_suffixes`` start runs. ``<stem>.json`` beside a
  media file is its sidecar and is passed to the run; a sidecar alone never starts one. A media
  file without its sidecar waits up to ``watch.sidecar_wait_s`` for it (so upload the sidecar
  first, or within that time), then starts without.
- One run per object version: the run's idempotency key is ``reelflow-ingest:<url>#<version>``
  (bucket, key and ETag; path, size and mtime for a local file). Prefect's server keeps one
  flow run per (flow, idempotency key), so a repeated event, the second event of a multipart
  upload, a redelivered message or a restarted watcher gets the existing run back: a no-op. The
  watcher also collapses repeats it has seen recently before asking the server.
- A drop that is not readable media is quarantined by its run (flows/ingest.py), never deleted.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import unquote_plus

from reelflow.errors import ConfigError, ReelflowError, StorageError, TransientStorageError
from reelflow.infra.hashing import config_digest
from reelflow.infra.remote import normalise_etag, parse_s3_url, s3_client
from reelflow.infra.settings import Settings, StorageConfig, WatchConfig
from reelflow.infra.storage import _atomic_write, translate_s3_error

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"
FLOW_NAME = "ingest"
RUN_KEY_PREFIX = "reelflow-ingest:"  # flows/ingest.py reads the dropped ETag back from the key


@dataclass(frozen=True)
class Drop:
    """One version of one object in the watched place."""

    url: str            # s3://bucket/key (key as stored) or file:///absolute/path
    name: str           # key, or path relative to the watched folder: what sidecars are matched on
    version: str        # ETag, or "<size>-<mtime_ns>" for a local file
    size: int = 0
    seen_at: float = 0.0  # time.time() when the watcher first heard of it

    @property
    def identity(self) -> str:
        return f"{self.url}#{self.version}"

    @property
    def stem(self) -> str:
        return str(PurePosixPath(self.name).with_suffix(""))


def idempotency_key(drop: Drop) -> str:
    """The flow run's idempotency key: the object and its version (a replaced object is a new drop)."""
    key = f"{RUN_KEY_PREFIX}{drop.identity}"
    # The server takes any length, but keep rows and log lines bounded for 1 KiB S3 keys.
    return key if len(key) <= 512 else f"{RUN_KEY_PREFIX}{config_digest(drop.identity)}:{key[-400:]}"


@dataclass
class Notice:
    """What a source handed over: drops, and what to acknowledge once they are all settled."""

    drops: list[Drop]
    token: Any = None
    waiting: set[str] = field(default_factory=set)  # identities not yet settled


class DropSource(Protocol):
    url: str

    def poll(self, timeout_s: float) -> list[Notice]:
        """New notices, waiting at most ``timeout_s`` for some."""

    def ack(self, notice: Notice) -> None:
        """Every drop of ``notice`` has its run (or was ignored): forget it for good."""

    def lookup(self, name: str) -> Drop | None:
        """The object called ``name`` now, if there is one (sidecars that arrive out of order)."""

    def keep_alive(self, notice: Notice, seconds: float) -> None:
        """``notice`` is still being worked on; keep it for at least ``seconds`` more."""


# --- S3 event notifications -------------------------------------------------------------------

def parse_s3_event(body: str) -> list[tuple[str, str, str, int]]:
    """(bucket, decoded key, ETag, size) of each ObjectCreated record in an SQS message body.

    Test events and other event types give nothing. A notification that came through SNS
    (S3 -> SNS -> SQS) is unwrapped. An unreadable body gives nothing and is logged.
    """
    try:
        message = json.loads(body)
        if isinstance(message, dict) and message.get("Type") == "Notification" and "Message" in message:
            message = json.loads(message["Message"])
    except (json.JSONDecodeError, TypeError):
        log.warning("ignoring a queue message that is not JSON: %.200s", body)
        return []
    if not isinstance(message, dict):
        return []
    if message.get("Event") == "s3:TestEvent":
        log.info("ignoring s3:TestEvent for bucket %s", message.get("Bucket"))
        return []
    out = []
    for record in message.get("Records") or ():
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        s3 = record.get("s3", {})
        obj = s3.get("object", {})
        out.append((str(s3.get("bucket", {}).get("name", "")), unquote_plus(str(obj.get("key", ""))),
                    normalise_etag(str(obj.get("eTag", ""))), int(obj.get("size", 0) or 0)))
    return out


def _s3_drop(bucket: str, key: str, etag: str, size: int) -> Drop:
    return Drop(url=f"s3://{bucket}/{key}", name=key, version=etag, size=size, seen_at=time.time())


class _S3Base:
    def __init__(self, url: str, storage: StorageConfig) -> None:
        where = parse_s3_url(url, key_required=False)
        self.url = url
        self.bucket = where.bucket
        self.prefix = where.key
        self.storage = storage
        self.s3 = s3_client(storage)
        self._call(lambda: self.s3.head_bucket(Bucket=self.bucket), f"cannot watch s3://{self.bucket}")

    def _call(self, fn: Callable[[], Any], action: str) -> Any:
        try:
            return fn()
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchBucket", "NotFound"):
                raise StorageError(f"{action}: bucket {self.bucket!r} does not exist"
                                   f"{' at ' + self.storage.s3_endpoint_url if self.storage.s3_endpoint_url else ''}"
                                   ) from exc
            raise translate_s3_error(exc, action, self.bucket, self.storage.s3_endpoint_url) from exc

    def lookup(self, name: str) -> Drop | None:
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=name)
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise translate_s3_error(exc, f"cannot check s3://{self.bucket}/{name}", self.bucket,
                                     self.storage.s3_endpoint_url) from exc
        return _s3_drop(self.bucket, name, normalise_etag(head["ETag"]), int(head["ContentLength"]))

    def keep_alive(self, notice: Notice, seconds: float) -> None:
        return None


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return str(error.get("QueryErrorCode") or error.get("Code") or "")
    return ""


class SqsSource(_S3Base):
    """The bucket's event notifications on an SQS queue, long-polled."""

    def __init__(self, url: str, queue: str, storage: StorageConfig, config: WatchConfig) -> None:
        super().__init__(url, storage)
        self.config = config
        self.sqs = s3_client(storage, "sqs", config.sqs_endpoint_url)
        self.queue_url = resolve_queue(self.sqs, queue, storage, config)

    def poll(self, timeout_s: float) -> list[Notice]:
        wait = int(max(0, min(self.config.wait_time_s, timeout_s)))
        response = self._sqs(lambda: self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
            VisibilityTimeout=self.config.visibility_timeout_s), "cannot receive from")
        notices = []
        for message in response.get("Messages", ()):
            drops = [_s3_drop(bucket, key, etag, size) for bucket, key, etag, size in parse_s3_event(message["Body"])
                     if bucket == self.bucket and key.startswith(self.prefix)]
            notices.append(Notice(drops=drops, token=message["ReceiptHandle"]))
        return notices

    def ack(self, notice: Notice) -> None:
        self._quietly(lambda: self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=notice.token),
                      "cannot delete a message from")

    def keep_alive(self, notice: Notice, seconds: float) -> None:
        timeout = int(min(43200, max(self.config.visibility_timeout_s, seconds + 30)))
        self._quietly(lambda: self.sqs.change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=notice.token, VisibilityTimeout=timeout),
            "cannot extend a message's visibility on")

    def _quietly(self, fn: Callable[[], Any], action: str) -> None:
        """A message that came back (its visibility ran out) has a new receipt handle, and the old
        one may be refused; the copy received later is acknowledged with its own handle. The worst
        case of a lost delete is one more delivery, which the idempotency key makes a no-op."""
        try:
            self._sqs(fn, action)
        except StorageError as exc:
            log.warning("%s", exc)

    def _sqs(self, fn: Callable[[], Any], action: str) -> Any:
        try:
            return fn()
        except Exception as exc:
            raise _sqs_error(exc, f"{action} {self.queue_url}", self.storage, self.config) from exc


def _sqs_error(exc: BaseException, action: str, storage: StorageConfig, config: WatchConfig) -> StorageError:
    if _code(exc) in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
        return StorageError(f"{action}: the queue does not exist; create it and the bucket notification "
                            "with `reelflow watch s3://bucket/prefix --queue NAME --setup`, or drop --queue "
                            "to list the bucket instead")
    error = translate_s3_error(exc, action, "-", config.sqs_endpoint_url or storage.s3_endpoint_url)
    return type(error)(str(error).replace("S3", "SQS").replace("on bucket '-'", "on the queue"))


def resolve_queue(sqs: Any, queue: str, storage: StorageConfig, config: WatchConfig) -> str:
    """The queue's URL from a URL or a name; StorageError when it does not exist."""
    action = f"cannot use queue {queue!r}"
    try:
        if queue.startswith(("http://", "https://")):
            sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
            return queue
        return str(sqs.get_queue_url(QueueName=queue)["QueueUrl"])
    except Exception as exc:
        raise _sqs_error(exc, action, storage, config) from exc


def setup_notifications(url: str, queue: str, storage: StorageConfig, config: WatchConfig) -> str:
    """Create ``queue`` (if needed) and point the bucket's ObjectCreated notifications under the
    prefix at it, keeping the bucket's other notification targets. Returns the queue URL."""
    where = parse_s3_url(url, key_required=False)
    s3 = s3_client(storage)
    sqs = s3_client(storage, "sqs", config.sqs_endpoint_url)
    name = queue.rstrip("/").rsplit("/", 1)[-1]
    try:
        queue_url = str(sqs.create_queue(QueueName=name)["QueueUrl"])
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        policy = {"Version": "2012-10-17", "Statement": [{
            "Sid": "reelflow-s3-events", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": arn,
            "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{where.bucket}"}}}]}
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    except Exception as exc:
        raise _sqs_error(exc, f"cannot create queue {name!r}", storage, config) from exc
    try:
        current = s3.get_bucket_notification_configuration(Bucket=where.bucket)
        current.pop("ResponseMetadata", None)
        queues = [q for q in current.get("QueueConfigurations", []) if q.get("QueueArn") != arn]
        rules = [{"Name": "prefix", "Value": where.key}] if where.key else []
        entry: dict[str, Any] = {"Id": "reelflow-watch", "QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}
        if rules:
            entry["Filter"] = {"Key": {"FilterRules": rules}}
        current["QueueConfigurations"] = [*queues, entry]
        s3.put_bucket_notification_configuration(Bucket=where.bucket, NotificationConfiguration=current)
    except Exception as exc:
        raise translate_s3_error(exc, f"cannot configure notifications of s3://{where.bucket}", where.bucket,
                                 storage.s3_endpoint_url) from exc
    log.info("s3://%s/%s ObjectCreated events go to %s", where.bucket, where.key, queue_url)
    return queue_url


# --- listing and local folder: a persisted seen-set ---------------------------------------------

class Ledger:
    """Identities of drops that have their run, in a JSON file (atomic writes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: set[str] = set()
        if path.is_file():
            try:
                self.seen = set(json.loads(path.read_text())["seen"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"the watcher's seen-set {path} is damaged ({exc}); move it away to start over "
                                  "(runs already started are not repeated: their idempotency keys stay)") from exc

    @classmethod
    def for_url(cls, state_dir: Path, url: str) -> Ledger:
        return cls(state_dir / f"seen-{config_digest(url)[:16]}.json")

    def __contains__(self, identity: str) -> bool:
        return identity in self.seen

    def add(self, identities: Iterable[str]) -> None:
        before = len(self.seen)
        self.seen.update(identities)
        if len(self.seen) != before:
            data = json.dumps({"seen": sorted(self.seen)}).encode()
            _atomic_write(self.path, lambda f: f.write(data))


class ListingSource(_S3Base):
    """No queue: the prefix listed every ``poll_s``; what the ledger has not seen is new."""

    def __init__(self, url: str, storage: StorageConfig, config: WatchConfig, ledger: Ledger) -> None:
        super().__init__(url, storage)
        self.config = config
        self.ledger = ledger
        self.next_poll = 0.0
        self.offered: set[str] = set()

    def poll(self, timeout_s: float) -> list[Notice]:
        delay = self.next_poll - time.monotonic()
        if delay > 0:
            time.sleep(min(delay, timeout_s))
            if time.monotonic() < self.next_poll:
                return []
        self.next_poll = time.monotonic() + self.config.poll_s
        notices = []
        for drop in self._list():
            if drop.identity not in self.ledger and drop.identity not in self.offered:
                self.offered.add(drop.identity)
                notices.append(Notice(drops=[drop], token=drop.identity))
        return notices

    def _list(self) -> list[Drop]:
        def pages() -> list[Drop]:
            found = []
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", ()):
                    found.append(_s3_drop(self.bucket, item["Key"], normalise_etag(item["ETag"]), int(item["Size"])))
            return found

        drops: list[Drop] = self._call(pages, f"cannot list s3://{self.bucket}/{self.prefix}")
        return drops

    def ack(self, notice: Notice) -> None:
        self.ledger.add(d.identity for d in notice.drops)
        self.offered.difference_update(d.identity for d in notice.drops)


class FolderSource:
    """A local folder: files picked up once they stop growing."""

    def __init__(self, root: Path, config: WatchConfig, ledger: Ledger) -> None:
        if not root.is_dir():
            raise ConfigError(f"cannot watch {root}: not a folder")
        self.root = root.resolve()
        self.url = str(self.root)
        self.config = config
        self.ledger = ledger
        self.next_poll = 0.0
        self.sizes: dict[Path, tuple[int, int, int]] = {}  # size, mtime_ns, polls unchanged
        self.offered: set[str] = set()

    def _drop(self, path: Path, size: int, mtime_ns: int) -> Drop:
        return Drop(url=path.as_uri(), name=path.relative_to(self.root).as_posix(), version=f"{size}-{mtime_ns}",
                    size=size, seen_at=time.time())

    def poll(self, timeout_s: float) -> list[Notice]:
        delay = self.next_poll - time.monotonic()
        if delay > 0:
            time.sleep(min(delay, timeout_s))
            if time.monotonic() < self.next_poll:
                return []
        self.next_poll = time.monotonic() + self.config.poll_s
        notices = []
        now: dict[Path, tuple[int, int, int]] = {}
        for path in self._files():
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            size, mtime, stable = self.sizes.get(path, (-1, -1, 0))
            stable = stable + 1 if (size, mtime) == (st.st_size, st.st_mtime_ns) else 0
            now[path] = (st.st_size, st.st_mtime_ns, stable)
            drop = self._drop(path, st.st_size, st.st_mtime_ns)
            if stable + 1 >= self.config.stable_polls and drop.identity not in self.ledger \
                    and drop.identity not in self.offered:
                self.offered.add(drop.identity)
                notices.append(Notice(drops=[drop], token=drop.identity))
        self.sizes = now
        return notices

    def _files(self) -> list[Path]:
        found: list[Path] = []
        for folder, dirs, names in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(Path(folder, n) for n in sorted(names) if not n.startswith("."))
        return found

    def lookup(self, name: str) -> Drop | None:
        path = self.root / name
        entry = self.sizes.get(path)
        # Only a sidecar that has stopped growing too.
        if entry is None or entry[2] + 1 < self.config.stable_polls:
            return None
        return self._drop(path, entry[0], entry[1])

    def ack(self, notice: Notice) -> None:
        self.ledger.add(d.identity for d in notice.drops)
        self.offered.difference_update(d.identity for d in notice.drops)

    def keep_alive(self, notice: Notice, seconds: float) -> None:
        return None


# --- starting runs ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RunRef:
    run_id: str
    created: bool  # False: the server already had a run with this idempotency key


class Dispatcher(Protocol):
    def submit(self, drop: Drop, sidecar: Drop | None) -> RunRef:
        """Start the drop's run (or find the one it already has); raise when the server refuses."""


class DeploymentDispatcher:
    """Creates flow runs of the ingest deployment, with the drop's idempotency key."""

    def __init__(self, deployment: str, *, parameters: dict[str, Any] | None = None) -> None:
        from prefect.client.orchestration import get_client

        self.name = deployment if "/" in deployment else f"{FLOW_NAME}/{deployment}"
        self.parameters = parameters or {}
        self.client = get_client(sync_client=True)
        self.client.__enter__()
        try:
            self.deployment_id = self.client.read_deployment_by_name(self.name).id
        except Exception as exc:
            self.close()
            raise prefect_error(exc, f"deployment {self.name!r}") from exc

    def submit(self, drop: Drop, sidecar: Drop | None) -> RunRef:
        from prefect.client.schemas.actions import DeploymentFlowRunCreate
        from prefect.client.schemas.objects import FlowRun
        from prefect.states import Scheduled, to_state_create

        parameters = {**self.parameters, "source": drop.url}
        if sidecar is not None:
            parameters["sidecar"] = sidecar.url
        create = DeploymentFlowRunCreate(parameters=parameters, state=to_state_create(Scheduled()),
                                         idempotency_key=idempotency_key(drop),
                                         name=_run_name(drop))
        try:
            # The request itself rather than client.create_flow_run_from_deployment: only the
            # status code tells a new run (201) from one the key already had (200).
            response = self.client.request(
                "POST", "/deployments/{id}/create_flow_run", path_params={"id": self.deployment_id},
                json=create.model_dump(mode="json", exclude_unset=True))
        except Exception as exc:
            raise prefect_error(exc, f"deployment {self.name!r}") from exc
        run = FlowRun.model_validate(response.json())
        return RunRef(run_id=str(run.id), created=response.status_code == 201)

    def close(self) -> None:
        self.client.__exit__(None, None, None)


def _run_name(drop: Drop) -> str:
    return f"drop-{PurePosixPath(drop.name).name[:60]}-{drop.version[:8]}"


def prefect_error(exc: BaseException, what: str) -> ReelflowError:
    """A Prefect client failure as the reelflow error a person can act on."""
    from prefect.exceptions import ObjectNotFound

    if isinstance(exc, ObjectNotFound):
        return ConfigError(f"{what} does not exist on the Prefect server; start `reelflow worker` (it registers "
                           "the deployment) or pass the right --deployment")
    import httpx

    if isinstance(exc, httpx.HTTPError):
        from prefect.settings import PREFECT_API_URL

        return ReelflowError(f"the Prefect server at {PREFECT_API_URL.value() or 'the embedded URL'} refused or did "
                            f"not answer ({type(exc).__name__}: {exc}); check PREFECT_API_URL")
    return ReelflowError(f"{what}: {type(exc).__name__}: {exc}")


# --- the watcher ------------------------------------------------------------------------------

@dataclass
class _Waiting:
    drop: Drop
    deadline: float
    notices: list[Notice]


@dataclass(frozen=True)
class Started:
    """A drop whose run the server accepted."""

    drop: Drop
    sidecar: Drop | None
    run: RunRef
    accepted_at: float


class Watcher:
    """Notices from a source in; one accepted run per media drop out; notices acked when settled."""

    def __init__(self, source: DropSource, dispatcher: Dispatcher, config: WatchConfig, *,
                 clock: Callable[[], float] = time.monotonic, on_start: Callable[[Started], None] | None = None,
                 recent_size: int = 10000) -> None:
        self.source = source
        self.dispatcher = dispatcher
        self.config = config
        self.clock = clock
        self.on_start = on_start
        self.suffixes = tuple(s.lower() for s in config.media_suffixes)
        self.waiting: dict[str, _Waiting] = {}   # media identity -> its drop and the notices holding it
        self.sidecars: OrderedDict[str, Drop] = OrderedDict()  # stem -> newest sidecar seen
        self.recent: OrderedDict[str, RunRef] = OrderedDict()  # identities that have their run
        self.recent_size = recent_size
        self.started: list[Started] = []
        self.errors = 0
        self.last_notices = 0

    def kind(self, drop: Drop) -> str:
        lowered = drop.name.lower()
        if lowered.endswith(SIDECAR_SUFFIX):
            return "sidecar"
        return "media" if lowered.endswith(self.suffixes) else "other"

    def step(self, timeout_s: float | None = None) -> list[Started]:
        """One poll of the source, then start whatever is ready; returns the runs started."""
        wait = self.config.wait_time_s if timeout_s is None else timeout_s
        if self.waiting:  # wake up for the first sidecar deadline
            wait = max(0.0, min(wait, min(w.deadline for w in self.waiting.values()) - self.clock()))
        notices = self.source.poll(wait)
        self.last_notices = len(notices)
        for notice in notices:
            self._take(notice)
        return self._dispatch_ready()

    def _take(self, notice: Notice) -> None:
        for drop in notice.drops:
            kind = self.kind(drop)
            if kind == "sidecar":
                self.sidecars[drop.stem] = drop
                self.sidecars.move_to_end(drop.stem)
                while len(self.sidecars) > self.recent_size:
                    self.sidecars.popitem(last=False)
                continue
            if kind == "other":
                log.info("ignoring %s: not a media file name (%s) nor a sidecar", drop.url, ", ".join(self.suffixes))
                continue
            if drop.identity in self.recent:
                log.info("%s: repeat of a drop that has its run (%s)", drop.url, self.recent[drop.identity].run_id)
                continue
            notice.waiting.add(drop.identity)
            if drop.identity in self.waiting:  # the second event of one upload, a redelivered message
                self.waiting[drop.identity].notices.append(notice)
                continue
            self.waiting[drop.identity] = _Waiting(drop, self.clock() + self.config.sidecar_wait_s, [notice])
        if not notice.waiting:
            self.source.ack(notice)

    def _sidecar_for(self, drop: Drop) -> Drop | None:
        stem = drop.stem
        if stem in self.sidecars:
            return self.sidecars[stem]
        found = self.source.lookup(stem + SIDECAR_SUFFIX)  # its event may come later than the media's
        if found is not None:
            self.sidecars[stem] = found
        return found

    def _dispatch_ready(self) -> list[Started]:
        started = []
        for identity, waiting in list(self.waiting.items()):
            sidecar = self._sidecar_for(waiting.drop)
            if sidecar is None and self.clock() < waiting.deadline:
                for notice in waiting.notices:
                    self.source.keep_alive(notice, waiting.deadline - self.clock())
                continue
            try:
                run = self.dispatcher.submit(waiting.drop, sidecar)
            except ReelflowError as exc:
                # The notices stay unacknowledged: the drop is tried again next step (and, from
                # a queue, comes back after its visibility timeout if this watcher dies).
                self.errors += 1
                log.error("cannot start the run of %s: %s", waiting.drop.url, exc)
                continue
            del self.waiting[identity]
            self._remember(identity, run)
            item = Started(waiting.drop, sidecar, run, time.time())
            started.append(item)
            self.started.append(item)
            log.info("%s %s -> flow run %s%s", "started" if run.created else "already had a run:",
                     waiting.drop.url, run.run_id, f" (sidecar {sidecar.name})" if sidecar else "")
            if self.on_start:
                self.on_start(item)
            for notice in waiting.notices:
                notice.waiting.discard(identity)
                if not notice.waiting:
                    self.source.ack(notice)
        return started

    def _remember(self, identity: str, run: RunRef) -> None:
        self.recent[identity] = run
        while len(self.recent) > self.recent_size:
            self.recent.popitem(last=False)

    def run(self, *, until: Callable[[], bool] | None = None, backoff_s: float = 5.0) -> None:
        """Poll until ``until()`` says stop (forever by default); ride out transient store errors."""
        while until is None or not until():
            try:
                self.step()
            except TransientStorageError as exc:
                log.warning("%s; trying again in %.0f s", exc, backoff_s)
                time.sleep(backoff_s)

    def drain(self, *, idle_polls: int = 2, poll_s: float = 1.0) -> list[Started]:
        """Poll until ``idle_polls`` polls in a row brought nothing and nothing waits (``--once``)."""
        idle = 0
        before = len(self.started)
        while idle < idle_polls or self.waiting:
            self.step(poll_s)
            idle = 0 if self.last_notices or self.waiting else idle + 1
        return self.started[before:]


def open_source(url: str, settings: Settings, queue: str | None = None) -> DropSource:
    """The source a watch URL names: s3:// with a queue (events), s3:// without one (listing), or a folder."""
    config = settings.watch
    if url.startswith("s3://"):
        queue = queue or config.queue
        if queue:
            return SqsSource(url, queue, settings.storage, config)
        log.warning("no queue given (--queue or watch.queue): listing %s every %.0f s", url, config.poll_s)
        return ListingSource(url, settings.storage, config, Ledger.for_url(config.state_dir, url))
    if "://" in url and not url.startswith("file://"):
        raise ConfigError(f"cannot watch {url!r}: use s3://bucket/prefix or a local folder")
    path = Path(url.removeprefix("file://")).expanduser()
    return FolderSource(path, config, Ledger.for_url(config.state_dir, str(path.resolve())))


def watch_summary(started: Sequence[Started]) -> list[dict[str, Any]]:
    return [{"source": s.drop.url, "version": s.drop.version, "sidecar": s.sidecar.url if s.sidecar else None,
             "flow_run_id": s.run.run_id, "created": s.run.created} for s in started]
