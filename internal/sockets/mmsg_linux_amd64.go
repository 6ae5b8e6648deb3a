package sockets

// System call numbers of recvmmsg and sendmmsg (package syscall lacks
// SYS_SENDMMSG on amd64).
const (
	sysRecvmmsg = 299
	sysSendmmsg = 307
)
