"""Start, stop, crash: shared memory never outlives the server, and a dead shard is loud, never a hang."""
import os
import signal
import time

import numpy as np
import pytest

from deepdist import Client, DeepDistError, ParameterServer, ShardDied, ShardTimeout, shm


def shard_pids(ps):
    return [process.pid for process in ps.processes]


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


POLL_INTERVAL = 0.05  # seconds between checks in wait_until


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(POLL_INTERVAL)


def test_normal_exit_unlinks_and_stops_shards(no_leftover_shm):
    with ParameterServer({"w": np.zeros((50_000, 4))}, shards=2) as ps:
        names = shm.leftover(f"{shm.PREFIX}{os.getpid()}-")
        assert len(names) == 1
        pids = shard_pids(ps)
        assert all(alive(pid) for pid in pids)
    assert not set(names) & set(shm.leftover())
    wait_until(lambda: not any(alive(pid) for pid in pids))


def test_exception_inside_the_block_still_cleans_up(no_leftover_shm):
    with pytest.raises(RuntimeError, match="user code failed"):
        with ParameterServer({"w": np.zeros((50_000, 4))}, shards=2) as ps:
            pids = shard_pids(ps)
            raise RuntimeError("user code failed")
    wait_until(lambda: not any(alive(pid) for pid in pids))


def test_killed_shard_is_reported_and_memory_unlinked(no_leftover_shm):
    params = {"w": np.zeros((50_000, 4))}
    with pytest.raises(ShardDied, match="shard 1 died with signal 9"):
        with ParameterServer(params, shards=2) as ps:
            with Client(ps.address) as client:
                client.push({"w": np.ones((50_000, 4))})
                client.flush()
            os.kill(ps.processes[1].pid, signal.SIGKILL)
            wait_until(lambda: 1 in ps.dead)  # the watcher noticed on its own
            with pytest.raises(ShardDied, match="shard 1"):
                ps.check()
            with Client(ps.address, timeout=1.0) as client:  # a timeout, not a hang
                with pytest.raises(ShardTimeout, match="shard 1 at tcp://.* did not reply within 1 s"):
                    client.pull()
    # Shard 0's half survived and came back to the caller's array.
    assert params["w"][:25_000].sum() == 100_000


def test_client_to_a_stopped_server_times_out():
    with ParameterServer({"w": np.zeros(10)}, shards=1) as ps:
        address = ps.address
    client = Client(address, timeout=0.5)
    try:
        client.push({"w": np.ones(10)})
        with pytest.raises(ShardTimeout):
            client.flush()
    finally:
        client.context.destroy(linger=0)


def test_a_failing_block_does_not_wait_for_acknowledgements():
    """Leaving a client's with-block on an exception closes without a flush: the caller's own exception comes
    out, not a second ShardTimeout after another wait on a shard that is gone."""
    with ParameterServer({"w": np.zeros(10)}, shards=1) as ps:
        address = ps.address
    with pytest.raises(RuntimeError, match="the task failed"):
        with Client(address, timeout=0.5) as client:
            client.push({"w": np.ones(10)})
            raise RuntimeError("the task failed")
    assert client.context is None  # closed all the same


def test_bad_parameters_are_refused_up_front():
    with pytest.raises(TypeError, match="float32 and float64"):
        ParameterServer({"w": np.zeros(3, np.int64)})
    with pytest.raises(TypeError, match="numpy array"):
        ParameterServer({"w": [1.0]})
    with pytest.raises(ValueError, match="at least one row"):
        ParameterServer({"w": np.zeros((0, 3))})
    with pytest.raises(ValueError, match="shards"):
        ParameterServer({"w": np.zeros(3)}, shards=0)


def test_moved_in_arrays_are_emptied_and_given_the_final_values_back(no_leftover_shm):
    """move_in hands arrays over: their pages go back to the system as they are copied into shared memory, so
    they read zeros while the server runs (all but the partial pages at either end); copy_back fills them
    with the final values. An array not named keeps its values."""
    moved, kept = np.full((4096, 256), 3.0, np.float32), np.full((4096, 256), 3.0, np.float32)
    with ParameterServer({"moved": moved, "kept": kept}, shards=2, move_in=["moved"]) as ps:
        assert (moved == 0).mean() > 0.99
        assert (kept == 3.0).all()
        np.testing.assert_array_equal(ps.params["moved"], 3.0)
        with Client(ps.address) as client:
            client.push({"moved": np.ones_like(moved)})
    np.testing.assert_array_equal(moved, 4.0)


def test_a_view_is_never_emptied(no_leftover_shm):
    """A view's memory belongs to its base, which others may read: it is copied, not moved."""
    base = np.full((2048, 256), 3.0, np.float32)
    with ParameterServer({"w": base[1024:]}, shards=1, move_in=["w"], copy_back=False):
        assert (base == 3.0).all()


def test_a_failed_start_hands_moved_in_values_back(no_leftover_shm):
    """Shards that cannot start (here: the port is taken) leave the moved-in arrays as they were."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        w = np.full((4096, 256), 3.0, np.float32)
        port = taken.getsockname()[1]
        with pytest.raises(DeepDistError, match=rf"shard 0 cannot listen on tcp://127\.0\.0\.1:{port}: Address "
                                                rf"already in use \(shard i listens on port \+ i"):
            ParameterServer({"w": w}, shards=1, host="127.0.0.1", port=port, move_in=["w"], copy_back=False).start()
        assert (w == 3.0).all()
    finally:
        taken.close()


def test_move_in_names_parameters():
    with pytest.raises(KeyError, match="not among the parameters"):
        ParameterServer({"w": np.zeros(3)}, move_in=["v"])


def test_parameters_sharing_memory_are_refused():
    """One array under two names: moving it in under the first emptied it for the second, and copying back
    wrote one's final values over the other's."""
    w = np.ones((1024, 16))
    with pytest.raises(ValueError, match="'a' and 'b' share memory"):
        ParameterServer({"a": w, "b": w}, move_in=["a", "b"])
    with pytest.raises(ValueError, match="'a' and 'b' share memory"):
        ParameterServer({"a": w, "b": w[10:20]})
    ParameterServer({"a": w[:512], "b": w[512:]})  # halves of one array do not overlap: fine


VIEWS_AFTER_THE_BLOCK = """
import numpy as np
from deepdist import DeepDist, ParameterServer
for copy_back in (True, False):
    given = {"w": np.ones((4, 2), np.float32)}
    with ParameterServer(given, shards=1, copy_back=copy_back) as ps:
        view = ps.params["w"]
    print(view.sum())
model = {"w": np.ones((4, 2), np.float32)}
with DeepDist(model, progress=False) as dd:
    row = model["w"][1]
print(row.sum(), model["w"].sum())
"""


def test_views_kept_past_the_block_stay_readable(no_leftover_shm):
    """A view of shared memory kept past the block keeps its mapping alive (it was unmapped under it: a
    segfault): it reads the final values, or zeros where they were moved out; the memory is unlinked."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", VIEWS_AFTER_THE_BLOCK], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    assert result.stdout.split() == ["8.0", "0.0", "0.0", "8.0"]


def test_a_move_interrupted_part_way_gives_the_values_back_and_leaves_no_segment(monkeypatch):
    """shm.create(move=True) gives each copied block's pages back as it goes: interrupted after some blocks
    (Ctrl-C, or madvise failing), the caller's array gets those blocks back, and the segment is unlinked."""
    monkeypatch.setattr(shm, "MOVE_BLOCK", 64 * 1024)
    released, give_back = [], shm.release_pages

    def interrupted_on_the_third(block):
        released.append(len(block))
        if len(released) == 3:
            raise KeyboardInterrupt
        give_back(block)

    monkeypatch.setattr(shm, "release_pages", interrupted_on_the_third)
    array = np.arange(262_144, dtype=np.float32)  # 1 MiB: 16 blocks
    with pytest.raises(KeyboardInterrupt):
        shm.create(array, tag="interrupted", move=True)
    assert len(released) == 3  # two blocks had been given back
    np.testing.assert_array_equal(array, np.arange(262_144, dtype=np.float32))
    assert not shm.leftover(f"{shm.PREFIX}{os.getpid()}-interrupted-")


def interrupt_moves_out(monkeypatch, interrupt, after_blocks=3):
    """Make shm's block moves call ``interrupt()`` once ``after_blocks`` blocks have given their pages back."""
    monkeypatch.setattr(shm, "MOVE_BLOCK", 64 * 1024)
    move_blocks = shm.move_blocks

    def moved_until_interrupted(src, dst, release):
        given_back = []

        def release_then_interrupt(start, stop):
            release(start, stop)
            given_back.append(stop)
            if len(given_back) == after_blocks:
                interrupt()

        move_blocks(src, dst, None if release is None else release_then_interrupt)

    monkeypatch.setattr(shm, "move_blocks", moved_until_interrupted)


def test_a_move_out_interrupted_part_way_leaves_the_segment_whole(monkeypatch):
    """move_out gives each copied block's shared pages back as it goes: interrupted after some blocks, the
    segment gets their values back, so that it still holds every value."""
    values = np.arange(262_144, dtype=np.float32)  # 1 MiB: 16 blocks
    segment = shm.create(values, tag="move-out")
    try:
        def interrupt():
            raise KeyboardInterrupt

        interrupt_moves_out(monkeypatch, interrupt)
        with pytest.raises(KeyboardInterrupt):
            segment.move_out()
        np.testing.assert_array_equal(segment.array, values)
    finally:
        segment.unlink()
        segment.close()


def test_ctrl_c_while_the_block_hands_values_back_waits_until_they_are_whole(monkeypatch, no_leftover_shm):
    """A Ctrl-C as the with-block ends, while the final values move out of shared memory: it is raised once
    every parameter is whole in its new array, and no segment is left."""
    values = np.arange(1 << 20, dtype=np.float32).reshape(1024, 1024)  # 4 MiB: 64 blocks
    interrupt_moves_out(monkeypatch, lambda: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        with ParameterServer({"w": values.copy(), "b": np.ones(3)}, shards=2, copy_back=False) as ps:
            pass
    np.testing.assert_array_equal(ps.params["w"], values)
    np.testing.assert_array_equal(ps.params["b"], 1.0)
    assert all(array.flags.owndata for array in ps.params.values())  # ordinary arrays, not shared memory


def test_an_answer_read_together_with_a_late_one_is_not_left_unseen(no_leftover_shm):
    """A command that timed out is answered late, and the next one's answer may come in the same read: both
    lines are taken, the late one passed over, and the current one returned at once, not after a timeout."""
    import subprocess
    import sys

    server = ParameterServer({"w": np.zeros(3)}, shards=1, start_timeout=20.0)
    talker = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdout.write('1 OK\\n2 OK\\n'); "
                               "sys.stdout.flush(); time.sleep(60)"], stdout=subprocess.PIPE)
    try:
        started = time.monotonic()
        assert server.read_answer(0, talker, 2, "answer") == "OK"
        assert time.monotonic() - started < 10  # not the 20 s of a missed line
    finally:
        talker.kill()
        talker.wait(10)
        talker.stdout.close()


def test_a_command_after_stop_says_the_server_is_stopping(no_leftover_shm):
    ps = ParameterServer({"w": np.zeros(3)}, shards=1).start()
    ps.stop()
    with pytest.raises(DeepDistError, match="the server is stopping: cannot open a session"):
        ps.open_session()
