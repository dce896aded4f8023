#!/usr/bin/python3
"""Starts a service the way its installed systemd unit would, where systemd is not PID 1
(CI, containers): unit_exec.py UNIT_DIR NAME.service [LISTEN_ADDR]

Takes from the unit: ExecStart, Environment, User, Group, LimitNOFILE, and for
StandardInput=socket the ListenStream of NAME.socket (LISTEN_ADDR overrides it, as
`systemctl edit NAME.socket` would), bound and handed over as the program's standard
input (a FastCGI program's listening socket). Anything else in [Service] that changes
how the program runs fails, so a unit that grows a setting this does not know is noticed.
Then it execs the program (stdout/stderr: the caller's, the journal's stand-in)."""
import grp, os, pwd, resource, shlex, socket, sys

KNOWN_IGNORED = {"Type", "KillSignal", "TimeoutStopSec", "Restart", "RestartSec", "NoNewPrivileges",
                 "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
                 "ProtectControlGroups", "StandardOutput", "StandardError"}


def parse(path):
    sections, cur = {}, None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                cur = sections.setdefault(line.strip("[]"), {})
                continue
            k, _, v = line.partition("=")
            cur.setdefault(k.strip(), []).append(v.strip())
    return sections


def main():
    unit_dir, name = sys.argv[1], sys.argv[2]
    listen = sys.argv[3] if len(sys.argv) > 3 else None
    svc = parse(os.path.join(unit_dir, name))["Service"]
    unknown = set(svc) - KNOWN_IGNORED - {"ExecStart", "Environment", "User", "Group", "LimitNOFILE", "StandardInput"}
    if unknown:
        sys.exit(f"unit_exec: {name}: settings not emulated: {sorted(unknown)}")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    for e in svc.get("Environment", []):
        for kv in shlex.split(e):
            k, _, v = kv.partition("=")
            env[k] = v
    argv = shlex.split(svc["ExecStart"][-1])
    if svc.get("StandardInput", [""])[-1] == "socket":
        sock = parse(os.path.join(unit_dir, name.rsplit(".", 1)[0] + ".socket"))["Socket"]
        addr = listen or sock["ListenStream"][-1]
        host, _, port = addr.rpartition(":")
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host.strip("[]"), int(port)))
        s.listen(int(sock.get("Backlog", ["128"])[-1]))
        os.dup2(s.fileno(), 0)
        s.close()
    if "LimitNOFILE" in svc:
        n = int(svc["LimitNOFILE"][-1])
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    if "User" in svc:
        pw = pwd.getpwnam(svc["User"][-1])
        gid = grp.getgrnam(svc["Group"][-1]).gr_gid if "Group" in svc else pw.pw_gid
        env.update(USER=pw.pw_name, LOGNAME=pw.pw_name, HOME=pw.pw_dir)
        os.setgroups([])
        os.setgid(gid)
        os.setuid(pw.pw_uid)
    os.execve(argv[0], argv, env)


main()
