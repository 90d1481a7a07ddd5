import pytest

from dockyard import errdefs, paths
from dockyard.ids import new_id, validate_id


def test_new_id_is_64_hex_and_unique():
    a, b = new_id(), new_id()
    assert len(a) == 64 and int(a, 16) >= 0 and a != b


@pytest.mark.parametrize("good", ["abc", "a.b", "my_container-1", "x+y", "A" * 200])
def test_valid_ids_pass(good):
    assert validate_id(good) == good


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b", "/abs", "-lead", "sp ace", "nul\0"])
def test_invalid_ids_are_refused_with_the_id_named(bad):
    with pytest.raises(errdefs.InvalidArgument) as exc:
        validate_id(bad)
    assert repr(bad) in str(exc.value)


def test_errors_share_one_root():
    for cls in (errdefs.NotFound, errdefs.AlreadyExists, errdefs.FailedPrecondition,
                errdefs.InvalidArgument, errdefs.Unavailable, errdefs.NotModified):
        assert issubclass(cls, errdefs.EngineError)


def test_unix_path_and_log_path():
    assert paths.unix_path("unix:///run/x.sock") == "/run/x.sock"
    assert paths.unix_path("/run/y.sock") == "/run/y.sock"
    assert paths.container_log("/d", "abc") == "/d/containers/abc/abc-json.log"
