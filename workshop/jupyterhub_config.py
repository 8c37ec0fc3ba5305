# JupyterHub for a workshop of the Postgres Design Workbook: one JupyterLab per learner, each with its own
# PostgreSQL role (DATABASE_URL) and its own copy of the notebooks, all on one shared PostgreSQL server.
#
#   .venv/bin/python -m pip install -e '.[workshop]'              # JupyterHub + the Python configurable-http-proxy
#   .venv/bin/python -m helpers workshop provision --learners 30  # roles, shared template, credentials.csv
#   PDW_HUB_CREDENTIALS=var/workshop/<prefix>/credentials.csv .venv/bin/jupyterhub -f workshop/jupyterhub_config.py
#
# See workshop/README.md for the whole procedure. Settings come from the environment:
#   PDW_HUB_CREDENTIALS    credentials.csv written by `workshop provision` (required): who may log in, and with
#                          which password; each learner's DATABASE_URL. The learner name is the role name.
#   PDW_HUB_DIR            the hub's state: its sqlite database, cookie secret, the learners' home directories
#                          (default: var/hub in the checkout)
#   PDW_HUB_IP, PDW_HUB_PORT   where learners connect (default 127.0.0.1:8000; put TLS or a reverse proxy in
#                          front before opening it to a network: PDW_HUB_SSL_CERT and PDW_HUB_SSL_KEY)
#   PDW_HUB_INTERNAL_PORT, PDW_HUB_PROXY_API_PORT   the hub's and the proxy's own ports (default 8081, 8001)
#   PDW_HUB_SYSTEM_USERS=1 one Unix user per learner (LocalProcessSpawner; the hub must run as root and creates the
#                          users). Without it every learner's server runs as the hub's own user
#                          (SimpleLocalProcessSpawner), which does NOT keep learners' files apart: a learner with
#                          a terminal could read another's DATABASE_URL. Use it only for trials and tests.
#   PDW_HUB_ADMIN, PDW_HUB_ADMIN_PASSWORD  an optional instructor account with the hub's admin page
import csv
import hmac
import os
import shutil
import sys
from pathlib import Path

from jupyterhub.auth import LocalAuthenticator
from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner
from traitlets import Bool

c = get_config()  # noqa: F821  (provided by JupyterHub when it reads this file)

ROOT = Path(__file__).resolve().parent.parent          # the checkout: its notebooks are copied for each learner
BIN = Path(sys.executable).parent                      # the venv JupyterHub runs from
HUB_DIR = Path(os.environ.get("PDW_HUB_DIR") or ROOT / "var" / "hub").resolve()
HUB_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
CREDENTIALS = os.environ.get("PDW_HUB_CREDENTIALS")
if not CREDENTIALS:
    sys.exit("Set PDW_HUB_CREDENTIALS to the credentials.csv that `python -m helpers workshop provision` wrote.")
with open(CREDENTIALS, newline="") as fh:
    LEARNERS = {row["learner"]: row for row in csv.DictReader(fh)}
ADMIN = os.environ.get("PDW_HUB_ADMIN")
ADMIN_PASSWORD = os.environ.get("PDW_HUB_ADMIN_PASSWORD")
SYSTEM_USERS = os.environ.get("PDW_HUB_SYSTEM_USERS") == "1"


class WorkshopAuthenticator(LocalAuthenticator):
    """Logs a learner in with the name and password from credentials.csv (the same password as their PostgreSQL
    role, so there is one secret per learner to hand out)."""

    create_system_users = Bool(SYSTEM_USERS, config=True)

    async def authenticate(self, handler, data):
        name = (data or {}).get("username", "")
        given = (data or {}).get("password", "")
        if name in LEARNERS:
            expected = LEARNERS[name]["password"]
        elif ADMIN and ADMIN_PASSWORD and name == ADMIN:
            expected = ADMIN_PASSWORD
        else:
            return None
        return name if hmac.compare_digest(given.encode(), expected.encode()) else None

    def system_user_exists(self, user):  # only consulted with PDW_HUB_SYSTEM_USERS=1
        return super().system_user_exists(user) if SYSTEM_USERS else True


def learner_env(name):
    """Each learner's server gets only their own credentials (JupyterHub passes no other variable through)."""
    row = LEARNERS.get(name) or {}
    return row.get("database_url", ""), row.get("pdw_workshop", ""), row.get("pdw_scale", "")


def home_of(spawner):
    if SYSTEM_USERS:
        return Path(os.path.expanduser(f"~{spawner.user.name}"))
    return Path(spawner.home_dir)


def copy_notebooks(spawner):
    """A private copy of the notebooks in the learner's home, made once (a re-spawn keeps the learner's edits)."""
    home = home_of(spawner)
    target = home / "notebooks"
    if not target.exists():
        target.mkdir(parents=True)
        for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
            shutil.copy2(nb, target / nb.name)
        if SYSTEM_USERS:
            for path in [home, *home.rglob("*")]:
                shutil.chown(path, spawner.user.name)


c.JupyterHub.authenticator_class = WorkshopAuthenticator
c.Authenticator.allowed_users = set(LEARNERS)  # known to the hub from the start (REST logins need that)
if ADMIN and ADMIN_PASSWORD:
    c.Authenticator.admin_users = {ADMIN}

if SYSTEM_USERS:
    c.JupyterHub.spawner_class = LocalProcessSpawner
else:
    c.JupyterHub.spawner_class = SimpleLocalProcessSpawner
    c.SimpleLocalProcessSpawner.home_dir_template = str(HUB_DIR / "homes" / "{username}")
c.Spawner.pre_spawn_hook = copy_notebooks
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
c.Spawner.args = ["--allow-root"] if os.geteuid() == 0 and not SYSTEM_USERS else []
c.Spawner.notebook_dir = "~"
c.Spawner.default_url = "/lab/tree/notebooks/00_start_here.ipynb"
c.Spawner.environment = {
    "DATABASE_URL": lambda sp: learner_env(sp.user.name)[0],
    "PDW_WORKSHOP": lambda sp: learner_env(sp.user.name)[1],
    "PDW_SCALE": lambda sp: learner_env(sp.user.name)[2],
    # The learner's own settings and scratch files (never the instructor's var/).
    "PDW_HOME": lambda sp: str(home_of(sp)),
}
c.Spawner.start_timeout = 120   # 30 learners logging in at once on a small machine
c.Spawner.http_timeout = 120

ip = os.environ.get("PDW_HUB_IP", "127.0.0.1")
port = int(os.environ.get("PDW_HUB_PORT", "8000"))
c.JupyterHub.bind_url = f"http://{ip}:{port}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{int(os.environ.get('PDW_HUB_INTERNAL_PORT', '8081'))}"
if os.environ.get("PDW_HUB_SSL_CERT"):
    c.JupyterHub.ssl_cert = os.environ["PDW_HUB_SSL_CERT"]
    c.JupyterHub.ssl_key = os.environ["PDW_HUB_SSL_KEY"]
    c.JupyterHub.bind_url = f"https://{ip}:{port}"
# configurable-http-proxy: the pure-Python drop-in from the `workshop` extra (the npm package works the same way).
c.ConfigurableHTTPProxy.command = [str(BIN / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{int(os.environ.get('PDW_HUB_PROXY_API_PORT', '8001'))}"
c.ConfigurableHTTPProxy.pid_file = str(HUB_DIR / "proxy.pid")

c.JupyterHub.db_url = f"sqlite:///{HUB_DIR / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(HUB_DIR / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(HUB_DIR / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True   # stopping the hub stops every learner's server
