#!/bin/busybox sh
# /init of the power-cut test's guest (packaging/test-powercut.sh builds the initramfs around it).
# Loads the modules listed in /etc/powercut/modules (in order), mounts the buffer disk
# (/dev/vda, ext4, made on the host and kept across boots) on /data, brings up the slirp network
# (10.0.2.15; the host's loopback is 10.0.2.2; no default route: nothing else is reachable) and
# runs prefront in the foreground, its log on the serial console. Lines the host script waits
# for or counts start with "powercut: ".
/bin/busybox mkdir -p /proc /sys /dev /data /tmp /run
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys

echo "powercut: guest up: $(uname -r), $(nproc) cpus, $(awk '/MemTotal/ {print $2}' /proc/meminfo) kB"

halt() {
    echo "powercut: $*"
    sync
    poweroff -f
    sleep 600
}

for m in $(cat /etc/powercut/modules); do
    insmod "/lib/modules/$m.ko" || echo "powercut: insmod $m failed (continuing)"
done

i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b /dev/vda ] || halt "FAIL: no /dev/vda"
# The default ext4 options: data=ordered, barriers on, 5 s journal commit. After a power cut the
# journal is replayed here.
mount -t ext4 /dev/vda /data || halt "FAIL: cannot mount /dev/vda"
echo "powercut: mounted: $(grep ' /data ' /proc/mounts)"
echo "powercut: write cache of vda: $(cat /sys/block/vda/queue/write_cache 2>/dev/null)"
ls -la /data/buffer 2>/dev/null | sed 's/^/powercut: buffer: /'

ip link set lo up
i=0
while ! ip link show eth0 >/dev/null 2>&1 && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
ip addr add 10.0.2.15/24 dev eth0 || halt "FAIL: no eth0"
ip link set eth0 up

if grep -q 'powercut.control=1' /proc/cmdline; then
    # The negative control (test-powercut.sh --control): every fsync-like call of prefront's
    # returns success without doing anything, so acknowledged calls may sit in the page cache
    # when the power goes. The test must then see losses.
    echo "powercut: starting prefront WITH ITS FSYNCS DISABLED (negative control)"
    strace -f -qq --seccomp-bpf -o /dev/null \
        -e trace=fsync,fdatasync,sync_file_range,syncfs,sync,msync \
        -e inject=fsync,fdatasync,sync_file_range,syncfs,sync,msync:retval=0 \
        /bin/prefront --config /etc/prefront/prefront.toml run
else
    echo "powercut: starting prefront"
    /bin/prefront --config /etc/prefront/prefront.toml run
fi
echo "powercut: FAIL: prefront exited with status $?"
halt "halting"
