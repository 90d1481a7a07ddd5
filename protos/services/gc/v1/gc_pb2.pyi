from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class CollectRequest(_message.Message):
    __slots__ = ("immediate",)
    IMMEDIATE_FIELD_NUMBER: _ClassVar[int]
    immediate: bool
    def __init__(self, immediate: _Optional[bool] = ...) -> None: ...

class CollectResponse(_message.Message):
    __slots__ = ("content_removed", "snapshots_removed", "leases_removed", "blobs_deleted")
    CONTENT_REMOVED_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOTS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    LEASES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    BLOBS_DELETED_FIELD_NUMBER: _ClassVar[int]
    content_removed: int
    snapshots_removed: int
    leases_removed: int
    blobs_deleted: int
    def __init__(self, content_removed: _Optional[int] = ..., snapshots_removed: _Optional[int] = ..., leases_removed: _Optional[int] = ..., blobs_deleted: _Optional[int] = ...) -> None: ...
