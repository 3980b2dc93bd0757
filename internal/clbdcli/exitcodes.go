package clbdcli

// Exit codes of clbd (sysexits(3), like clb_register's).
const (
	ExitFailure     = 1  // the command ran and failed (haproxy refused the config, ...)
	ExitUsage       = 64 // bad flags or arguments
	ExitDataErr     = 65 // input data broken (a state dir that cannot be read)
	ExitNoInput     = 66 // an input file is missing
	ExitUnavailable = 69 // a service clbd needs (etcd) does not answer
	ExitConfig      = 78 // the config is invalid
)
