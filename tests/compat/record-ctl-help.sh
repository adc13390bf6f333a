#!/usr/bin/env bash
# Records what upstream's ipfs-cluster-ctl prints, without a cluster, for its help pages,
# usage errors and unknown commands: stdout, stderr and exit code of every case below.
# crates/ctl/tests/upstream_help.rs replays each case against our ctl and compares.
#
#   tests/compat/record-ctl-help.sh            record with the pinned upstream binary
#                                              (deploy/local/upstream.sh installs it)
#   tests/compat/record-ctl-help.sh CTL DIR    record CTL into DIR (e.g. ours, to diff)
#
# The recordings are data from upstream, checked in with the version they came from
# (tests/compat/upstream-v<version>/ctl-help/); rerun this script to regenerate them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [ $# -ge 2 ]; then
  ctl=$1
  out=$2
else
  ctl="$("$root/deploy/local/upstream.sh" path)/ipfs-cluster-ctl"
  version=$("$ctl" --version | awk '{print $3}')
  out="$here/upstream-v$version/ctl-help"
fi
[ -x "$ctl" ] || { echo "record-ctl-help.sh: no executable ctl at $ctl" >&2; exit 1; }

# The binary is run through a link named ipfs-cluster-ctl: urfave/cli prints the name it
# was started as.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ln -s "$(cd "$(dirname "$ctl")" && pwd)/$(basename "$ctl")" "$work/ipfs-cluster-ctl"

cases=()
add() { cases+=("$*"); }
# every command path of the tree, with --help and -h
paths=("" id peers "peers ls" "peers rm" add pin "pin add" "pin rm" "pin update" "pin ls"
  status recover version health "health graph" "health metrics" "health alerts"
  "health bandwidth" ipfs "ipfs gc" commands help)
for p in "${paths[@]}"; do
  add "${p:+$p }--help"
  add "${p:+$p }-h"
done
# the app and command groups without a command; the help command and its alias
add ""
add "pin"
add "peers"
add "health"
add "ipfs"
add "h"
for p in id peers add pin status recover version health ipfs commands help; do
  add "help $p"
done
add "h pin"
add "help pin add"
add "pin help"
add "pin h"
add "pin help add"
add "health help graph"
add "ipfs help"
# version, command listing
add "--version"
add "-v"
add "commands"
# unknown commands and flags
add "nothing"
add "help nothing"
add "pin nothing"
add "pin add --bogus-flag QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
add "pin ls -bogus"
add "status -bogus=1 QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
add "id --bogus"
add "version --bogus"
add "peers ls --bogus"
add "health metrics --bogus"
add "ipfs gc --bogus"
add "pin --bogus ls"
add "health --bogus"
add "--bogus id"
add "--host /ip4/127.0.0.1/tcp/1 add --bogus x"
# flag values Go's flag package refuses, a flag without its value
add "pin add --replication abc QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
add "pin add -rmin 1.5 QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
add "pin add --wait-timeout 5 QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
add "pin rm --wt zz QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
add "add --cid-version x a.txt"
add "--timeout x id"
add "--https=maybe id"
add "status --local=maybe QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
add "pin ls --filter"
add "--host"
# missing arguments: urfave runs the command with empty ones (no request is made)
add "--host /ip4/127.0.0.1/tcp/1 peers rm"
add "--host /ip4/127.0.0.1/tcp/1 pin update"

rm -rf "$out"
mkdir -p "$out"
: >"$out/cases.txt"
i=0
for c in "${cases[@]}"; do
  i=$((i + 1))
  n=$(printf '%03d' "$i")
  # word splitting of the case is intended: no case has a quoted argument
  # shellcheck disable=SC2086
  (cd "$work" && env -u CLUSTER_CREDENTIALS ./ipfs-cluster-ctl $c >"$out/$n.stdout" 2>"$out/$n.stderr" </dev/null) && code=0 || code=$?
  printf '%s\t%s\t%s\n' "$n" "$code" "$c" >>"$out/cases.txt"
done
echo "record-ctl-help.sh: $i cases recorded in $out" >&2
