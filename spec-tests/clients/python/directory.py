"""OpenLDAP's slapd on a loopback port with one person, for signing in through the company
directory (scripts/test installs slapd and ldap-utils). Killed by PID when stopped."""

import base64
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BASE = "dc=sori,dc=test"
SERVICE_DN = f"cn=sori,{BASE}"
SERVICE_PASSWORD = "service-secret"
# uid, employee number, display name, password
PERSON = ("minsu", "1001", "김민수", "minsu-ldap-password")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Slapd:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="sori-slapd-")
        self.port = _free_port()
        db = Path(self.dir) / "db"
        db.mkdir()
        config = Path(self.dir) / "slapd.conf"
        schema = "/etc/ldap/schema"
        config.write_text(
            f"include {schema}/core.schema\ninclude {schema}/cosine.schema\n"
            f"include {schema}/inetorgperson.schema\n"
            f"pidfile {self.dir}/slapd.pid\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n"
            f'database mdb\nsuffix "{BASE}"\nrootdn "cn=root,{BASE}"\nrootpw root-secret\n'
            f"directory {db}\nmaxsize 10485760\n"
        )
        uid, number, name, password = PERSON
        encoded = base64.b64encode(name.encode()).decode()
        ldif = Path(self.dir) / "people.ldif"
        ldif.write_text(
            f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Sori\ndc: sori\n\n"
            f"dn: {SERVICE_DN}\nobjectClass: person\nobjectClass: simpleSecurityObject\n"
            f"cn: sori\nsn: sori\nuserPassword: {SERVICE_PASSWORD}\n\n"
            f"dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people\n\n"
            f"dn: uid={uid},ou=people,{BASE}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
            f"cn: {uid}\nsn: {uid}\ndisplayName:: {encoded}\nemployeeNumber: {number}\n"
            f"userPassword: {password}\n"
        )
        subprocess.run(
            ["/usr/sbin/slapadd", "-f", str(config), "-l", str(ldif)],
            check=True,
            capture_output=True,
        )
        self.process = subprocess.Popen(
            ["/usr/sbin/slapd", "-f", str(config), "-h", f"ldap://127.0.0.1:{self.port}/",
             "-d", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("slapd did not start")
                time.sleep(0.05)

    def ldap_toml(self) -> str:
        return (
            "[ldap]\nenabled = true\n"
            f'url = "ldap://127.0.0.1:{self.port}"\n'
            f'bind_dn = "{SERVICE_DN}"\nbind_password = "{SERVICE_PASSWORD}"\n'
            f'base_dn = "ou=people,{BASE}"\n'
            'login_attributes = ["uid", "employeeNumber"]\n'
            "timeout_ms = 2000\n"
        )

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
