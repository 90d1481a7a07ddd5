"""Capabilities: the name table, masks, and the call sequence against a fake Syscalls."""

from __future__ import annotations

import pytest
from dockyard.shim import caps
from fakes.syscalls import FakeSyscalls

from dockyard import errdefs

DOCKER_DEFAULT = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                  "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                  "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


class FakeSys(FakeSyscalls):
    """The shared recording fake; calls shortened to (name, option/first, second, third)."""

    @property
    def short(self) -> list[tuple]:
        return [c[:4] for c in self.calls if c[0] in ("prctl", "capset")]


@pytest.fixture(autouse=True)
def kernel_knows_40(monkeypatch):
    monkeypatch.setattr(caps, "_last_cap", 40)


def test_table_covers_chown_to_checkpoint_restore():
    assert len(caps.CAPABILITIES) == 41
    assert caps.number("CAP_CHOWN") == 0 and caps.number("CAP_SYS_ADMIN") == 21
    assert caps.number("CAP_CHECKPOINT_RESTORE") == 40
    assert caps.name_of(38) == "CAP_PERFMON" and caps.name_of(63) == "CAP_63"


def test_dockers_defaults_make_its_known_mask():
    assert caps.mask(DOCKER_DEFAULT) == 0xA80425FB
    assert caps.names_of(0xA80425FB) == sorted(DOCKER_DEFAULT, key=caps.number)


@pytest.mark.parametrize("bad", ["CHOWN", "cap_chown", "CAP_SUPERPOWER", None])
def test_unknown_names_are_named(bad):
    with pytest.raises(errdefs.InvalidArgument) as exc:
        caps.mask([bad])
    assert repr(bad) in str(exc.value)


def test_validate_names_the_set():
    with pytest.raises(errdefs.InvalidArgument, match="capabilities.ambient"):
        caps.validate({"ambient": ["CAP_NOPE"]})
    with pytest.raises(errdefs.InvalidArgument, match="unknown set 'magic'"):
        caps.validate({"magic": []})


def test_bounding_drops_everything_not_listed():
    sys = FakeSys()
    caps.apply_bounding(["CAP_CHOWN", "CAP_KILL"], sys)
    dropped = [c[2] for c in sys.short]
    assert all(c[1] == 24 for c in sys.short)  # PR_CAPBSET_DROP
    assert dropped == [i for i in range(41) if i not in (0, 5)]


def test_sets_then_ambient_only_when_permitted_and_inheritable():
    sys = FakeSys()
    caps.apply_sets({"effective": ["CAP_KILL"], "permitted": ["CAP_KILL", "CAP_CHOWN"],
                     "inheritable": ["CAP_CHOWN"], "ambient": ["CAP_CHOWN", "CAP_KILL"]}, sys)
    assert sys.short == [("capset", 1 << 5, 1 << 5 | 1, 1),
                         ("prctl", 47, 4, 0),        # PR_CAP_AMBIENT_CLEAR_ALL
                         ("prctl", 47, 2, 0)]        # raise CAP_CHOWN; CAP_KILL not inheritable


def test_effective_outside_permitted_is_refused():
    with pytest.raises(errdefs.InvalidArgument, match="CAP_SYS_ADMIN"):
        caps.apply_sets({"effective": ["CAP_SYS_ADMIN"], "permitted": []}, FakeSys())


def test_caps_unknown_to_the_kernel_are_left_out(monkeypatch):
    monkeypatch.setattr(caps, "_last_cap", 37)
    sys = FakeSys()
    caps.apply_sets({"effective": ["CAP_BPF"], "permitted": ["CAP_BPF", "CAP_KILL"]}, sys)
    assert sys.short[0] == ("capset", 0, 1 << 5, 0)


def test_full_sequence_keeps_caps_across_the_user_switch():
    sys = FakeSys()
    switched = []
    caps.apply_capabilities({"bounding": DOCKER_DEFAULT, "effective": DOCKER_DEFAULT,
                             "permitted": DOCKER_DEFAULT},
                            change_user=lambda: switched.append(len(sys.short)), sys=sys)
    kinds = [c[:2] for c in sys.short]
    n_drop = 41 - len(DOCKER_DEFAULT)
    assert kinds[:n_drop] == [("prctl", 24)] * n_drop
    assert sys.short[n_drop] == ("prctl", 8, 1, 0)       # PR_SET_KEEPCAPS 1
    assert switched == [n_drop + 1]                      # user switched in between
    assert sys.short[n_drop + 1] == ("prctl", 8, 0, 0)   # PR_SET_KEEPCAPS 0
    assert sys.short[n_drop + 2] == ("capset", 0xA80425FB, 0xA80425FB, 0)


def test_no_capabilities_drops_everything():
    sys = FakeSys()
    caps.apply_capabilities(None, sys=sys)
    assert len([c for c in sys.short if c[1] == 24]) == 41
    assert ("capset", 0, 0, 0) in sys.short


def test_last_cap_is_probed_when_proc_is_not_mounted(monkeypatch):
    import builtins
    import errno

    class ProbeSys(FakeSys):
        def prctl(self, option, arg2=0, arg3=0, arg4=0, arg5=0):
            if option == 23 and arg2 > 37:  # PR_CAPBSET_READ past an older kernel's last
                raise OSError(errno.EINVAL, "Invalid argument")
            return super().prctl(option, arg2, arg3, arg4, arg5)

    real_open = builtins.open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc/sys/kernel/cap_last_cap"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_proc)
    monkeypatch.setattr(caps, "_last_cap", None)
    sys = ProbeSys()
    caps.apply_bounding(["CAP_CHOWN"], sys)
    assert caps.last_cap() == 37
    assert max(c[2] for c in sys.short if c[1] == 24) == 37  # no drop past the last cap
