/* The control protocol between librettod and its clients (CLI, runtime). */
#ifndef LIBRETTO_CTL_H
#define LIBRETTO_CTL_H

/*
 * Transport: a SOCK_SEQPACKET UNIX socket at LIBRETTO_CONTROL_PATH (the
 * environment variable LIBRETTO_CONTROL overrides it).  One request is one
 * message, one reply is one message; a message is at most CTL_MSG_MAX bytes
 * of text, one "key=value" per line (wireguard-tools style).  The first line
 * of a request is the command name alone.  Every reply ends with the line
 * "errno=N" (0 on success, a positive errno value on failure), preceded by
 * "error=<one line of human text>" when N != 0.
 *
 * File descriptors travel with a reply as SCM_RIGHTS; the reply's "fds=" key
 * names them in order, comma separated (e.g. "fds=xsk,umem,region").
 *
 * Commands:
 *
 *   register      keys: name=, mode=direct, ip=auto|A.B.C.D, vf=auto|NAME,
 *                 backend=afxdp|afpacket|auto   (auto = AF_XDP, AF_PACKET
 *                 only if AF_XDP cannot be set up; "afxdp" never falls back)
 *                 The peer's pid is taken from SO_PEERCRED.  The connection
 *                 that sent "register" is the application's lease: when it is
 *                 closed by every holder (EOF), the VF and IP are released.
 *                 Reply keys: id=, name=, ip=, prefix=, gateway=, mac=,
 *                 vf=, ifindex=, backend=, umem_size=, frame_size=,
 *                 ring_size=, fds=xsk,umem,region (afxdp) or
 *                 fds=packet,region (afpacket).
 *   register      (indirect, the network server's rings; issue 4)
 *                 keys: name=, mode=indirect, ip=shared|auto|A.B.C.D (shared
 *                 and auto: the shared IP; A.B.C.D: a dedicated pool address,
 *                 or the shared IP itself).  Needs netd running (else
 *                 ENETDOWN, error= says why).  librettod creates the ring
 *                 region (a memfd laid out by ring_region_init(), sealed
 *                 F_SEAL_SHRINK|F_SEAL_GROW), the two doorbell eventfds, and
 *                 sends netd `app_add` (netd.h); the lease's end sends
 *                 `app_del` and removes the application's ports.
 *                 Reply keys: id=, name=, ip=, prefix=, gateway=, mac= (netd's
 *                 MAC: the application sends from it), backend=shm,
 *                 ring_nframes=, ring_frame_size=, ring_size=,
 *                 fds=ring,efd_netd,efd_app,region.
 *   port          on a lease connection (indirect): keys op=add|del,
 *                 proto=tcp|udp, port=N (1..65535), ip=A.B.C.D|any (any: the
 *                 lease's address).  Adds/removes (ip, proto, port) -> this
 *                 application in the port table netd steers by.  Reply
 *                 errno=0; EADDRINUSE when another application holds it
 *                 (error= names it); add of an entry the application holds
 *                 already: 0 (reference counted by the runtime, not here).
 *   ps            reply: "apps=N" then, per application, one line
 *                 "app=<id> name= pid= alive=0|1 mode= ip= mac= vf= backend=
 *                 policy=auto|manual|fixed switching=- mode_since_ms= mode_why=
 *                 switches= rate_pps= rx_packets= rx_bytes= tx_packets=
 *                 tx_bytes= ports=tcp:80,udp:53"
 *                 (the whole record on one line, space separated key=value),
 *                 plus holders=PID,PID... (the processes holding the lease
 *                 now; "-" none, "?" unknown).
 *   status        reply: nic=, shared_ip=, pool=A-B, vfs=vf1:free,vf2:<app id>,...
 *                 and the network server: netd=running|restarting|stopped,
 *                 netd_pid= (0 unless running), netd_restarts= (netd
 *                 processes started after the first), netd_last_exit=
 *                 ("-", "exit N" or "signal N (Name)"), netd_error= (why
 *                 netd is not running; absent while it runs).
 *   stats         netd's counters: netd_pid=, netd_restarts=, then netd's own
 *                 `stats` reply as include/libretto/netd.h describes it
 *                 (global counters one per line, apps=N, one "app=<id> ..."
 *                 line per application), then one "switch=<id> name= mode=
 *                 policy= mode_since_ms= mode_why= switches= rate_pps= vf="
 *                 line per switchable application.  ESRCH with error= when netd is
 *                 not running.
 *   shutdown      librettod releases everything it holds and exits.
 *   handover      keys: pid=K.  Sent by the runtime on its lease connection
 *                 when K runs the stack from now on (the keeper made when
 *                 the process running it exits, docs/runtime.md "Fork"; or
 *                 a daemonized child that started it);
 *                 K must be a child of the lease's pid or hold the lease
 *                 connection, and becomes the lease's pid.
 *
 * Storage (issue 8, docs/storage.md).  An image is a regular file or block
 * device holding ext4 with 4096-byte blocks.  librettod opens it itself
 * and holds an OFD write lock on byte 0 (F_OFD_SETLK) for as long as any
 * lease uses it; the runtime locks byte 1 while it has it mounted.
 *
 *   volume        on a lease connection, after register, once per volume:
 *                 keys image=/abs/path (realpath; no space, ',', ';', '='),
 *                 mount=/abs/dir (not "/", no trailing slash, no "." or
 *                 ".." component, not overlapping another of the lease's),
 *                 storage=direct|indirect.  The client (SO_PEERCRED) must be
 *                 allowed to read and write the image itself.
 *                 Reply, direct: fds=image (an O_RDWR descriptor of the
 *                 image, a description of its own).  Indirect: the keys of
 *                 libretto-fsd's session (vol=, session=, ... as fsd.h says)
 *                 and their fds=.  A direct volume belongs to one lease; an
 *                 indirect one is shared by any number through fsd.  The
 *                 lease's end releases its volumes.  Errors: EBUSY (error=
 *                 "volume IMAGE is in use by app N (name, pid P)", "... in
 *                 use: served by libretto-fsd ...", "... in use: locked by
 *                 another process", "... in use by the kernel ..." for a
 *                 loop-attached or mounted one, "... already attached to
 *                 this application"), ENOENT, EACCES, EINVAL (not ext4, not
 *                 4096-byte blocks, not a file or block device, a bad or
 *                 overlapping mount), ENODEV (fsd not running, error= why).
 *   volumes       reply: "volumes=N" then, per volume in use, one line
 *                 "volume=MAJ:MIN:INO storage=direct|indirect apps=ID,...
 *                 names=NAME,... pids=PID,... mounts=/m,... image=/path"
 *                 (the lists in the same order, one entry per lease).
 *                 `status` carries volumes=N too.
 *
 * Mode switching (issue 6, docs/switching.md).  A lease on a dedicated IP
 * (every direct lease, an indirect one with ip=A.B.C.D) is switchable when
 * librettod has a port table: its register reply says switchable=1, and the
 * runtime then claims its ports with `port` in both modes (so that netd can
 * steer them the moment it serves the application).  register also takes
 * mode=auto (start indirect on a dedicated IP; librettod moves the
 * application between the modes by its packet rate) with the optional keys
 * auto_high=, auto_low= (packets/s, rx+tx), auto_dwell_ms=.
 *
 *   switch        keys: app=<id or name>, mode=direct|indirect|auto.  From
 *                 the CLI: librettod moves the application to that mode
 *                 (direct or indirect pins it there; auto hands it back to
 *                 the policy).  Reply errno=0 once the order is sent; the
 *                 switch itself completes asynchronously (ps shows it).
 *
 * Supervisor restart (issue 7, docs/librettod.md "Restart").  Every
 * register reply also carries secret= (32 hex digits), which the runtime
 * keeps with its lease.
 *
 *   reattach      keys: id=, secret=, mode=direct|indirect, fds=N[,N...]
 *                 (the sender's own numbers of its current path's
 *                 descriptors, in the lease's order: xsk,umem or packet, or
 *                 ring,efd_netd,efd_app), region=N.  Sent on a new
 *                 connection by a runtime whose lease connection reached EOF
 *                 (librettod died).  A librettod that recovered that lease
 *                 from its predecessor's state record copies the descriptors
 *                 from the sender (pidfd_getfd(), SO_PEERCRED's pid) and this
 *                 connection becomes the lease.  errno=0; EACCES when no
 *                 recovered lease with that id and secret waits (the runtime
 *                 stops trying), EPROTO when the descriptors do not fit it.
 *
 * Orders librettod sends on a lease connection, unsolicited (the runtime
 * tells them from replies by their first key):
 *
 *   order=switch  keys: mode=direct|indirect, reason=, and the lease keys
 *                 of the new path: backend=afxdp|afpacket|shm, mac=, the
 *                 backend's own keys (umem_size= frame_size= ring_size=, or
 *                 ring_nframes= ring_frame_size= ring_size=), and fds=
 *                 naming the descriptors that come with it.
 *
 * Requests of the runtime on its lease connection during a switch (each
 * answered errno=0):
 *
 *   switched      keys: mode=.  The new path carries the application's
 *                 frames now; the old one only drains what still arrives.
 *   switch_failed keys: mode=, error=.  The new path could not be opened;
 *                 the application stays where it was, librettod frees it.
 *   switch_drained  keys: mode= (the current one).  The old path has been
 *                 idle long enough and is closed: librettod frees it.
 *   switch_want   keys: mode=indirect, reason=.  The application's own path
 *                 failed (an AF_XDP error): it asks to be moved.
 */

#define LIBRETTO_CONTROL_DIR "/run/librettos"
#define LIBRETTO_CONTROL_PATH LIBRETTO_CONTROL_DIR "/control.sock"
#define CTL_MSG_MAX 65536
#define CTL_MAX_FDS 8

/*
 * Environment handed by `libretto run` to the preloaded runtime.  The value
 * is one line of space-separated key=value pairs: the register reply plus
 * "<name>_fd=N" for each received descriptor and "ctl_fd=N" for the lease.
 * The runtime removes it (and LD_PRELOAD) from its environment at start-up,
 * so programs the application execs run on the kernel stack.
 */
#define LIBRETTO_LEASE_ENV "LIBRETTO_LEASE"

#endif
