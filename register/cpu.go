package register

import (
	"os"
	"strconv"
	"strings"
)

// cpuMeter measures the machine's CPU use between two readings of /proc/stat's "cpu" line:
// the share of time not idle (idle and iowait count as idle), in percent. It is what
// clb_register --keepalive reports with each renewal (Auto Scaling's CPUUtilization).
type cpuMeter struct {
	path        string
	busy, total uint64
	primed      bool
}

func newCPUMeter() *cpuMeter {
	m := &cpuMeter{path: "/proc/stat"}
	m.percent() // the first reading only sets the start
	return m
}

// percent returns the CPU use since the previous call; ok is false without a usable reading
// (no /proc, or no time passed).
func (m *cpuMeter) percent() (float64, bool) {
	busy, total, ok := readCPU(m.path)
	if !ok {
		return 0, false
	}
	prevBusy, prevTotal, primed := m.busy, m.total, m.primed
	m.busy, m.total, m.primed = busy, total, true
	if !primed || total <= prevTotal || busy < prevBusy {
		return 0, false
	}
	pct := 100 * float64(busy-prevBusy) / float64(total-prevTotal)
	return min(max(pct, 0), 100), true
}

// readCPU reads the aggregate cpu line: user nice system idle iowait irq softirq steal ...
func readCPU(path string) (busy, total uint64, ok bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, false
	}
	var idle uint64
	// Fields 1-8 (guest time is already counted in user and nice).
	for i := 1; i < len(f) && i <= 8; i++ {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total += v
		if i == 4 || i == 5 {
			idle += v
		}
	}
	return total - idle, total, true
}
