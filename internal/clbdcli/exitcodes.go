package clbdcli

// Exit codes of clbd (sysexits(3), like clb_register's). The operator commands (status,
// members, zone, unregister) use the same table: exitHelp is what `clbd help` and the man
// page print, and the README's "Operating clbd" repeats it.
const (
	ExitFailure     = 1  // the command ran and failed (haproxy refused the config, a 409 conflict, ...)
	ExitUsage       = 64 // bad flags or arguments (also a 400 bad_request from the API)
	ExitDataErr     = 65 // input data broken (a state dir that cannot be read, an answer that is not JSON)
	ExitNoInput     = 66 // an input file is missing (no credentials to sign with)
	ExitNotFound    = 67 // the API answered 404: unknown service, member or zone
	ExitUnavailable = 69 // clbd does not answer (not running?), or a service it needs (etcd) is unavailable
	ExitTempFail    = 75 // saved but not applied yet (503 not_applied), or rate-limited (429): retry later
	ExitNoPerm      = 77 // refused: the key is unknown or wrong (401), its scope does not allow the call (403), or the credentials cannot be read
	ExitConfig      = 78 // the config is invalid or cannot be read
)

// exitHelp documents the exit codes in `clbd help` (and so in clbd(8)).
const exitHelp = `EXIT STATUS
   0   success (an admin action: applied, haproxy runs the change)
   1   failed (haproxy refused the config, a conflict, an unexpected answer)
   64  bad usage: flags or arguments (or the API's 400 bad_request)
   65  broken input data (a state dir or an API answer that cannot be read)
   66  no credentials: neither a keys file with a key to use nor a password file
   67  not found: unknown service, member or zone (the API's 404)
   69  unavailable: clbd does not answer (is it running?), or etcd is unavailable (503 store_unavailable)
   75  try again: saved but not yet applied (503 not_applied), or rate-limited (429)
   77  refused: unknown or wrong key (401), scope too small (403: admin actions need an admin key),
       or the keys or password file cannot be read (run as root or as clb-server)
   78  the config file is invalid or cannot be read`
