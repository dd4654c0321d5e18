"""Job names carry their owner, so a notebook's clean-up never cancels the live jobs of a check, a test or a
second kernel on the shared Flink cluster (it used to: ``cancel_jobs`` matched every job with the lab's prefix)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from delab.streaming import flink_jobs


def test_names_keep_the_labs_prefix_and_are_tagged_once():
    name = flink_jobs.owned("m03_l04 tumbling")
    assert name.startswith("m03_l04 tumbling [pid ")
    assert flink_jobs.owned(name) == name


def test_a_job_of_another_live_process_is_left_alone():
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as other:
        try:
            assert flink_jobs.belongs_to_another_live_process(
                f"m03_l04 check [pid {other.pid} on {socket.gethostname()}]"
            )
        finally:
            other.kill()
        other.wait()
        # once that process has ended (a restarted kernel), its leftovers are cancelled
        assert not flink_jobs.belongs_to_another_live_process(
            f"m03_l04 check [pid {other.pid} on {socket.gethostname()}]"
        )


def test_own_untagged_and_other_machines_jobs():
    assert not flink_jobs.belongs_to_another_live_process(flink_jobs.owned("m03_l04 x"))
    assert not flink_jobs.belongs_to_another_live_process("m03_l04 x")  # named before tags existed
    assert flink_jobs.belongs_to_another_live_process(f"m03_l04 x [pid {os.getpid()} on another-machine]")
