# Steps the guest agent runs on dom0's request. Each prints the guest's own evidence (kernel
# messages, sysfs values, checksums, fio's summary) and returns non-zero on any failure.

fail() { echo "FAIL: $*"; return 1; }

wait_block() {  # DEV [SECONDS]: the frontend has connected the disk
  i=0
  while [ ! -b "/dev/$1" ]; do
    i=$((i + 1)); [ "$i" -gt "$((${2:-60} * 5))" ] && { fail "/dev/$1 did not appear"; return 1; }
    sleep 0.2
  done
  echo "/dev/$1: $(cat "/sys/block/$1/size") sectors"
}

# Scenario 1: a filesystem on the disk, files with checksums, fsck, remount, verify, trim.
disk_filesystem() {  # DEV
  dev=/dev/$1
  mkfs.ext4 -q -F "$dev" || { fail "mkfs.ext4 $dev"; return 1; }
  mkdir -p /mnt/d && mount -t ext4 "$dev" /mnt/d || { fail "mount"; return 1; }
  for n in 1 2 3 4 5 6 7 8; do
    dd if=/dev/urandom of=/mnt/d/file$n bs=64k count=$((n * 8)) 2>/dev/null || { fail "write file$n"; return 1; }
  done
  (cd /mnt/d && sha256sum file* > /tmp/sums)
  sync
  umount /mnt/d || { fail "umount"; return 1; }
  e2fsck -f -n "$dev" > /tmp/fsck 2>&1; frc=$?
  tail -1 /tmp/fsck
  [ "$frc" -eq 0 ] || { cat /tmp/fsck; fail "e2fsck exit $frc"; return 1; }
  echo "e2fsck: clean"
  echo 3 > /proc/sys/vm/drop_caches
  mount -t ext4 "$dev" /mnt/d || { fail "remount"; return 1; }
  (cd /mnt/d && sha256sum -c /tmp/sums) || { fail "checksums after remount"; return 1; }
  echo "checksums: $(wc -l < /tmp/sums) files verified after remount"
  rm /mnt/d/file1 /mnt/d/file2 /mnt/d/file3 && sync
  fstrim -v /mnt/d || { fail "fstrim"; return 1; }
  umount /mnt/d
}

# The longest completion latency of fio's write phase, in ms: under the kills of scenario 3, the
# longest a request waited across one (the kill, the successor's start and its first answer).
fio_longest_write() {  # FIO_OUTPUT
  sed -n '/ write: /,/ clat (/p' "$1" | grep " clat (" | head -1 | sed 's/^ *//'
  sed -n '/ write: /,/ clat (/p' "$1" | grep " clat (" | head -1 | awk '{
    u = $2; m = $0; sub(/.*max= */, "", m); sub(/,.*/, "", m)
    f = 1; if (m ~ /k$/) f = 1000; if (m ~ /M$/) f = 1000000; sub(/[kM]$/, "", m)
    d = (u ~ /nsec/) ? 1000000 : (u ~ /usec/) ? 1000 : 1
    printf "longest write: %d ms\n", m * f / d }'
}

disk_fio_verify() {  # DEV SIZE
  fio --name=verify --filename="/dev/$1" --ioengine=libaio --direct=1 --rw=randwrite --bs=4k \
      --iodepth=16 --size="${2:-32M}" --verify=crc32c --do_verify=1 --verify_fatal=1 \
      --output-format=normal > /tmp/fio 2>&1; rc=$?
  grep -E "verify:|write:|read:|err=|crc32c" /tmp/fio | head -8
  fio_longest_write /tmp/fio
  [ "$rc" -eq 0 ] || { tail -20 /tmp/fio; fail "fio exit $rc"; return 1; }
  grep -q "err= 0" /tmp/fio || { fail "fio reported errors"; return 1; }
  echo "fio verify: ok"
}

# Scenario 3: the same verification running while dom0 kills pvback-blk with SIGKILL. start returns
# at once; wait collects fio's verdict and the kernel's: blkfront says "I/O error", "bad id" or
# "wrong operation" when a backend loses, repeats or garbles an answer.
disk_fio_verify_start() {  # DEV SIZE
  dmesg -c > /dev/null
  fio --name=verify --filename="/dev/$1" --ioengine=libaio --direct=1 --rw=randwrite --bs=4k \
      --iodepth=16 --size="${2:-16M}" --verify=crc32c --do_verify=1 --verify_fatal=1 \
      --output-format=normal > /tmp/fio-bg 2>&1 &
  echo $! > /tmp/fio-bg.pid
  echo "fio started (pid $(cat /tmp/fio-bg.pid))"
}

disk_fio_verify_wait() {
  pid=$(cat /tmp/fio-bg.pid)
  wait "$pid" 2>/dev/null
  while kill -0 "$pid" 2>/dev/null; do sleep 0.5; done
  grep -E "verify:|write:|read:|err=|crc32c" /tmp/fio-bg | head -8
  fio_longest_write /tmp/fio-bg
  grep -q "err= 0" /tmp/fio-bg || { tail -20 /tmp/fio-bg; fail "fio reported errors"; return 1; }
  if dmesg | grep -iE "I/O error|bad id|wrong operation|blkfront.*(error|invalid)"; then
    fail "the guest kernel logged block errors across the kill"; return 1
  fi
  echo "fio verify across the kill: ok; guest kernel: no block errors"
}

# Scenario 2: what the guest kernel negotiated, as it reports it.
disk_features() {  # DEV
  d=$1
  dmesg | grep -E "blkfront: $d" | tail -2
  for f in max_segments max_hw_sectors_kb discard_max_bytes discard_granularity write_cache nr_requests; do
    echo "queue/$f=$(cat /sys/block/$d/queue/$f 2>/dev/null)"
  done
  echo "hw_queues=$(ls /sys/block/$d/mq | wc -l)"
  echo "ro=$(cat /sys/block/$d/ro) removable=$(cat /sys/block/$d/removable)"
  vbd=$(xenstore-list device/vbd 2>/dev/null)
  for id in $(ls /sys/bus/xen/devices | sed -n 's/^vbd-//p'); do
    node=$(cat /sys/bus/xen/devices/vbd-$id/nodename)
    be=$(xenstore-read $node/backend)
    echo "vbd-$id: frontend ring-page-order=$(xenstore-read $node/ring-page-order 2>/dev/null || echo 0)" \
         "queues=$(xenstore-read $node/multi-queue-num-queues 2>/dev/null || echo 1)" \
         "persistent=$(xenstore-read $node/feature-persistent 2>/dev/null)" \
         "backend=$be"
  done
}

# A read-only disk refuses writes, and its contents stay as they were.
disk_read_only() {  # DEV
  d=$1
  [ "$(cat /sys/block/$d/ro)" = 1 ] || { fail "/sys/block/$d/ro is not 1"; return 1; }
  before=$(dd if=/dev/$d bs=1M count=4 iflag=direct 2>/dev/null | sha256sum | cut -c1-16)
  if dd if=/dev/zero of=/dev/$d bs=4k count=1 oflag=direct 2>/tmp/dd; then fail "write to read-only $d succeeded"; return 1; fi
  echo "write refused: $(tail -1 /tmp/dd)"
  after=$(dd if=/dev/$d bs=1M count=4 iflag=direct 2>/dev/null | sha256sum | cut -c1-16)
  [ "$before" = "$after" ] || { fail "read-only disk changed"; return 1; }
  echo "contents unchanged: $after"
}

disk_cdrom() {  # DEV
  d=$1
  echo "ro=$(cat /sys/block/$d/ro) removable=$(cat /sys/block/$d/removable) capability=$(cat /sys/block/$d/capability 2>/dev/null)"
  node=$(cat /sys/block/$d/device/nodename 2>/dev/null)
  echo "device-type=$(xenstore-read $node/device-type 2>/dev/null)"
  dd if=/dev/$d bs=2048 count=16 of=/dev/null iflag=direct 2>&1 | tail -1
}

disk_checksum() {  # DEV MB: checksum of the first MB
  dd if=/dev/$1 bs=1M count="$2" iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1
}

disk_write_pattern() {  # DEV MB
  dd if=/dev/urandom of=/tmp/pattern bs=1M count="$2" 2>/dev/null
  dd if=/tmp/pattern of=/dev/$1 bs=1M oflag=direct 2>/dev/null || { fail "write pattern"; return 1; }
  sha256sum < /tmp/pattern | cut -d' ' -f1
}

disk_gone() {  # DEV
  i=0
  while [ -b "/dev/$1" ]; do i=$((i + 1)); [ "$i" -gt 150 ] && { fail "/dev/$1 still present"; return 1; }; sleep 0.2; done
  echo "/dev/$1 removed"; dmesg | tail -3
}

# Scenario 4/6: network.
net_wait() {  # ADDR
  i=0
  while ! ip -4 addr show dev eth0 2>/dev/null | grep -q "inet "; do
    i=$((i + 1)); [ "$i" -gt 300 ] && { fail "eth0 has no address"; return 1; }; sleep 0.2
  done
  ip -4 addr show dev eth0 | grep inet
  dmesg | grep -iE "xen_netfront|netfront" | tail -2
  for f in /sys/class/net/eth0/device/nodename; do node=$(cat $f); done
  echo "queues=$(ls -d /sys/class/net/eth0/queues/tx-* | wc -l)" \
       "backend=$(xenstore-read $node/backend 2>/dev/null)"
}

net_servers() {
  mkdir -p /var/www
  dd if=/dev/urandom of=/var/www/blob bs=1k count=100 2>/dev/null
  echo hello > /var/www/index.html
  httpd -p 80 -h /var/www || { fail "httpd"; return 1; }
  iperf3 -s -D || { fail "iperf3 -s"; return 1; }
  echo "httpd and iperf3 server running; blob sha256 $(sha256sum < /var/www/blob | cut -c1-16)"
}

# Scenario 6: the workload measured on both backends.
disk_bench() {  # DEV SECONDS
  fio --name=randread --filename="/dev/$1" --ioengine=libaio --direct=1 --rw=randread --bs=4k --iodepth=16 \
      --time_based --runtime="$2" --size=128M --output-format=terse --terse-version=3 > /tmp/r 2>&1 || { cat /tmp/r; return 1; }
  fio --name=seqread --filename="/dev/$1" --ioengine=libaio --direct=1 --rw=read --bs=1M --iodepth=4 \
      --time_based --runtime="$2" --size=128M --output-format=terse --terse-version=3 > /tmp/s 2>&1 || { cat /tmp/s; return 1; }
  # terse v3: field 8 read IOPS, field 7 read bandwidth KiB/s (MB/s with one decimal: under
  # emulation a backend may read well under 1 MB/s, which an integer would make 0)
  echo "randread_iops=$(cut -d';' -f8 /tmp/r) seqread_MBps=$(cut -d';' -f7 /tmp/s | awk '{ printf "%.1f", $1 / 1024 }')"
}
