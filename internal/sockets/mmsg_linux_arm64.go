package sockets

// System call numbers of recvmmsg and sendmmsg.
const (
	sysRecvmmsg = 243
	sysSendmmsg = 269
)
