"""Every bound Agora enforces, each with its unit and the reason for its value.

Owns: plain named constants and nothing else; modules import them by name so a bound is
changed in one place and documented where it is changed (DESIGN.md section 5, habit 3;
TigerBeetle's TIGER_STYLE "put a limit on everything").
"""

# --- internode transport (agora.runtime.framing, .transport, .transport_client) ---------

# Largest payload one internode frame may carry, in bytes. Cassandra caps a mutation at half
# a 32 MiB commitlog segment; 16 MiB is the same order. A length prefix above this is a
# broken or hostile peer: that connection is closed, nothing is buffered for it.
MAX_FRAME_BYTES = 16 * 1024 * 1024

# Largest mutation a client may write, in bytes (the bound `plain.partition_size_bound`
# gives; for a LOGGED batch, all its partitions together, which travel in one batchlog
# message). Anything bigger could not be sent to a replica, hinted or replayed, so it is
# refused before any replica applies it (Cassandra: max_mutation_size, half a commitlog
# segment). 64 KiB below the frame leaves room for the message around the partitions.
MAX_MUTATION_BYTES = MAX_FRAME_BYTES - 64 * 1024

# Largest hello frame, in bytes. The hello is four short fields; a first frame longer than
# this is not a hello, so it is refused before a stranger can make us buffer 16 MiB.
HELLO_MAX_BYTES = 1024

# Longest sender id or cluster name in a hello, in characters. "ip:port" and cluster names
# are tens of characters; this only stops absurd values reaching logs and dict keys.
HELLO_FIELD_MAX_CHARS = 256

# Frames waiting for one peer (not yet connected, or writes paused by back-pressure), in
# frames and in bytes. Past either bound send() drops and counts: the protocol layer's
# request timeouts already handle loss, and a dead peer must not eat the node's memory.
PEER_QUEUE_MAX_FRAMES = 10_000
PEER_QUEUE_MAX_BYTES = 64 * 1024 * 1024

# Oldest a frame may be when it leaves a peer node's queue, in milliseconds. Frames wait
# there while the peer is not connected yet or its writes are paused; 2000 ms is the shortest
# request timeout (write_request_timeout), so past it the request a frame carries has timed
# out at its coordinator. Delivering a minutes-old mutation to a replica that just restarted
# would act like an unrecorded hint and hide the staleness hints, read repair and tests are
# there to deal with, so such frames are dropped and counted ("expired"), as Cassandra's
# outbound queue drops messages past their expiry.
QUEUED_FRAME_MAX_AGE_MS = 2_000

# Coalescing buffer, in bytes: frames sent to one peer within one event-loop iteration go
# out in one write, unless this many bytes are already waiting; then they are written at
# once so a burst does not hold a large buffer for the rest of the iteration...
COALESCE_FLUSH_BYTES = 256 * 1024
# ... or once this many frames are waiting: well under PEER_QUEUE_MAX_FRAMES, so a burst of
# tiny frames to a connected, writable peer is written rather than dropped.
COALESCE_FLUSH_FRAMES = 4_096

# Most bytes joined into one write when draining a long queue (one bigger frame is still
# written whole). Keeps a reconnect's 64 MiB backlog from being copied in one go.
WRITE_CHUNK_MAX_BYTES = 1024 * 1024

# Socket write-buffer marks, in bytes, for pause_writing()/resume_writing(): above HIGH we
# stop draining a peer's queue until the kernel has taken it down to LOW. A few MiB keeps a
# fast link busy without holding much unsent data in user space.
WRITE_HIGH_WATER_BYTES = 4 * 1024 * 1024
WRITE_LOW_WATER_BYTES = 1024 * 1024

# Reconnect back-off, in milliseconds: the first retry after a failure or close waits about
# MIN, each further consecutive failure doubles it, up to MAX (jittered to half..full so a
# restarted node is not hit by every peer at the same instant). MAX bounds how long a
# recovered peer waits to hear from us.
RECONNECT_BACKOFF_MIN_MS = 100
RECONNECT_BACKOFF_MAX_MS = 5_000

# Default time to open a TCP connection to a peer and receive its answering hello, in
# seconds. On loopback or a LAN a live node answers in well under a millisecond.
CONNECT_TIMEOUT_S = 2.0

# An accepted connection that has not sent its hello within this many seconds is closed,
# so idle or half-open strangers cannot pile up.
HANDSHAKE_TIMEOUT_S = 10.0

# Frames a TransportClient holds unread before it stops reading its socket (pause_reading),
# and the count it must drain to before reading again.
CLIENT_INBOX_MAX_FRAMES = 10_000
CLIENT_INBOX_RESUME_FRAMES = 2_500
