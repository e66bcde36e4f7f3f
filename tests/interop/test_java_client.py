"""The official Java client (Debian libzookeeper-java), compiled at test time."""

import glob
import os
import shutil
import subprocess

import pytest

JAR = os.environ.get("ZK_JAR", "/usr/share/java/zookeeper.jar")
SRC = os.path.join(os.path.dirname(__file__), "java")


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    assert os.path.exists(JAR), f"{JAR} missing: apt-get install libzookeeper-java"
    assert shutil.which("javac"), "javac missing: apt-get install default-jdk-headless"
    out = tmp_path_factory.mktemp("java-classes")
    r = subprocess.run(["javac", "-cp", JAR, "-d", str(out)] + glob.glob(f"{SRC}/*.java"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return str(out)


@pytest.mark.parametrize("scenario", ["session", "watch", "version", "async", "lock"])
def test_java_client(server, kz, base, classes, scenario):
    r = subprocess.run(
        ["java", "-Dzookeeper.log.threshold=WARN", "-cp", f"{JAR}:{classes}",
         "JavaClientInterop", server.hostport, base, scenario],
        capture_output=True, text=True, timeout=90)
    assert r.returncode == 0 and f"PASS {scenario}" in r.stdout, r.stdout + r.stderr[-3000:]


def test_java_client_rearms_100k_watches(server, kz, base, classes, proxy):
    """A Java session with 100,000 exist watches is cut off (through a proxy) and
    reconnects: its client re-arms them in setWatches requests of at most 128 KB, which
    the server must all accept; then creating watched nodes fires their watches."""
    p = subprocess.Popen(
        ["java", "-Dzookeeper.log.threshold=WARN", "-cp", f"{JAR}:{classes}",
         "JavaClientInterop", proxy.hostport, base, "manywatches", server.hostport],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Bounded by the scenario's own 60 s wait for the watches to be set.
        line = p.stdout.readline()
        assert line.strip() == "READY", line + p.stdout.read() + p.stderr.read()[-3000:]
        proxy.cut()
        out, err = p.communicate(timeout=100)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0 and "PASS manywatches" in out, out + err[-3000:]
