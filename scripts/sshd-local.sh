#!/usr/bin/env bash
# A throwaway sshd on 127.0.0.1 for the remote tests: its own port, host key, client key and
# config under DIR (the test's temporary folder); prints the ssh command line that reaches it.
# Installs Debian's openssh-server when it is missing and this runs as root; otherwise says
# why on standard error and exits 1 (the test then says it skipped).
set -euo pipefail
dir=${1:?usage: sshd-local.sh DIR}
sshd=/usr/sbin/sshd
if [[ ! -x $sshd ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server ||
      { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server; }; } >&2 ||
      { echo "installing openssh-server failed" >&2; exit 1; }
  else
    echo "no $sshd, and installing openssh-server needs root and apt:  sudo apt-get install -y openssh-server" >&2
    exit 1
  fi
fi
command -v ssh >/dev/null || { echo "no ssh client" >&2; exit 1; }
mkdir -p "$dir" /run/sshd 2>/dev/null || true
ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key" >/dev/null
ssh-keygen -q -t ed25519 -N '' -f "$dir/id" >/dev/null
cp "$dir/id.pub" "$dir/authorized_keys"
chmod 600 "$dir/authorized_keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$dir/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
CONF
"$sshd" -f "$dir/sshd_config" -E "$dir/sshd.log" || { echo "sshd did not start: $(tail -3 "$dir/sshd.log" 2>/dev/null)" >&2; exit 1; }
ssh_cmd=(ssh -p "$port" -i "$dir/id" -o BatchMode=yes -o StrictHostKeyChecking=no
  -o UserKnownHostsFile="$dir/known_hosts" -o LogLevel=ERROR 127.0.0.1)
# Wait until it answers.
for _ in $(seq 50); do
  if "${ssh_cmd[@]}" true 2>/dev/null; then
    echo "${ssh_cmd[*]}"
    exit 0
  fi
  sleep 0.1
done
echo "sshd on port $port did not answer: $(tail -3 "$dir/sshd.log" 2>/dev/null)" >&2
exit 1
