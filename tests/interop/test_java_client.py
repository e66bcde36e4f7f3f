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
