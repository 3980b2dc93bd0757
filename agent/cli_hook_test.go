package agent_test

import (
	"clb/agent"
	"clb/internal/clbdcli"
)

func init() { agent.CLIMain = clbdcli.Main }
