# Process helpers shared by scripts/control-plane and scripts/node (sourced; the caller defines `say` and `die`).

# Prints the last N (default 30) lines of a log, for "a process died / did not become ready" errors.
show_log() {
  local log=$1 n=${2:-30}
  [ -f "$log" ] || return 0
  say "last $n lines of $log:"
  tail -n "$n" "$log" >&2 || true
}

# True when $1 is a live process whose executable is $2 and whose command line contains $3 (a pid can be reused,
# and other checkouts run the same cached binaries: the marker is an argument naming this checkout's files).
is_ours() {
  local pid=$1 exe=$2 marker=${3:-} actual
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  actual=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  actual=${actual% (deleted)}
  [ "$actual" = "$exe" ] || return 1
  [ -z "$marker" ] || tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$marker"
}

# True when the process is gone (or a zombie). Right after `spawn … &` the pid is still the subshell that is about
# to exec the binary, so is_ours is false for a moment although nothing failed: startup waits use this instead.
exited() {
  local pid=$1
  [ -z "$pid" ] || [ ! -d "/proc/$pid" ] || grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

# Sends TERM, waits up to $5 seconds (default 20), then KILL. Only for a pid verified by is_ours. With
# GROUP=1 the signals go to the process group the pid leads (spawn makes every process a session leader), so
# children it forked (socat's per-connection copies) end too.
end_process() {
  local name=$1 pid=$2 exe=$3 marker=$4 secs=${5:-20} target i
  is_ours "$pid" "$exe" "$marker" || return 0
  target=$pid
  [ "${GROUP:-0}" = 1 ] && target=-$pid
  kill -TERM -- "$target" 2>/dev/null || return 0
  for i in $(seq 1 $((secs * 10))); do
    is_ours "$pid" "$exe" "$marker" || { say "stopped $name (pid $pid)"; return 0; }
    sleep 0.1
  done
  say "$name (pid $pid) did not exit after TERM within ${secs}s; sending KILL"
  kill -KILL -- "$target" 2>/dev/null || true
  for i in $(seq 1 50); do
    is_ours "$pid" "$exe" "$marker" || return 0
    sleep 0.1
  done
  die "$name (pid $pid) is still running"
}

# Runs "$@" in its own session with stdin from /dev/null, output appended to log $1, and every other file
# descriptor closed (the start lock, callers' pipes), so it outlives this script and holds nothing of its
# caller. Run it with `&`; $! is then the process's pid (setsid does not fork: the subshell is no group leader).
spawn() {
  local log=$1 fd; shift
  for fd in $(ls /proc/$BASHPID/fd); do
    [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
  done
  exec setsid "$@" </dev/null >>"$log" 2>&1
}
