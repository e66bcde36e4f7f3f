"""A throwaway MIT Kerberos KDC for the GSSAPI tests (Debian's krb5-kdc and
krb5-admin-server): realm EXAMPLE.COM in a temporary directory with its own krb5.conf
(KRB5_CONFIG) and kdc.conf (KRB5_KDC_PROFILE), listening on a free loopback port, run in
the foreground as our child and stopped by its PID. Principals and keytabs are made with
kadmin.local, which works on the database directly (no kadmind is started).
"""

import os
import shutil
import socket
import subprocess
import time

REALM = "EXAMPLE.COM"
KDC = shutil.which("krb5kdc") or "/usr/sbin/krb5kdc"
KDB5_UTIL = shutil.which("kdb5_util") or "/usr/sbin/kdb5_util"
KADMIN_LOCAL = shutil.which("kadmin.local") or "/usr/sbin/kadmin.local"


def available():
    return all(os.access(p, os.X_OK) for p in (KDC, KDB5_UTIL, KADMIN_LOCAL))


def _free_port():
    # A port free for TCP; the KDC also takes it for UDP, which is all but always free
    # too on loopback.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MiniKdc:
    def __init__(self, dir):
        self.dir = dir
        self.port = _free_port()
        self.krb5_conf = os.path.join(dir, "krb5.conf")
        self.kdc_conf = os.path.join(dir, "kdc.conf")
        with open(self.krb5_conf, "w") as f:
            f.write(f"""[libdefaults]
    default_realm = {REALM}
    dns_lookup_realm = false
    dns_lookup_kdc = false
    rdns = false
    ignore_acceptor_hostname = false
    udp_preference_limit = 1
[realms]
    {REALM} = {{
        kdc = 127.0.0.1:{self.port}
    }}
[domain_realm]
    localhost = {REALM}
""")
        with open(self.kdc_conf, "w") as f:
            f.write(f"""[kdcdefaults]
    kdc_ports = {self.port}
    kdc_tcp_ports = {self.port}
[realms]
    {REALM} = {{
        database_name = {dir}/principal
        key_stash_file = {dir}/stash
        acl_file = {dir}/kadm5.acl
        max_life = 1h
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    }}
[logging]
    kdc = FILE:{dir}/kdc.log
""")
        self.env = dict(os.environ, KRB5_CONFIG=self.krb5_conf, KRB5_KDC_PROFILE=self.kdc_conf)
        self.proc = None

    def _run(self, *args):
        r = subprocess.run(list(args), env=self.env, capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {r.stdout}{r.stderr}")
        return r.stdout

    def start(self):
        self._run(KDB5_UTIL, "create", "-s", "-r", REALM, "-P", "master-password")
        # -n: stay in the foreground, so the process we hold is the KDC itself.
        self.proc = subprocess.Popen([KDC, "-n", "-r", REALM], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"krb5kdc exited with {self.proc.returncode}: "
                                       f"{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError("krb5kdc did not listen within 30 s")
                time.sleep(0.05)  # a port that is not yet open: there is no event

    def add_principal(self, name):
        """Makes `name` with a random key and returns the path of its keytab."""
        keytab = os.path.join(self.dir, name.replace("/", "_") + ".keytab")
        self._run(KADMIN_LOCAL, "-r", REALM, "-q", f"addprinc -randkey {name}")
        self._run(KADMIN_LOCAL, "-r", REALM, "-q", f"ktadd -k {keytab} {name}")
        return keytab

    def log_tail(self):
        try:
            with open(os.path.join(self.dir, "kdc.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return "(no kdc.log)"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
