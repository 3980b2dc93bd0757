package awsapi

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"clb/agent/autoscale"
)

// CloudWatch 2010-08-01, the alarm subset boto's Auto Scaling recipe uses: PutMetricAlarm,
// DescribeAlarms, DeleteAlarms. An alarm must name a group (dimension AutoScalingGroupName)
// and one of the group metrics clbd measures (config.Metrics: CPUUtilization as members
// report it, RequestRate, Latency, ... from haproxy); any Namespace is accepted (AWS/EC2 in
// the tutorial). Its AlarmActions are the group's policy ARNs; the group controller evaluates
// it at every check.

// CloudWatchVersion and CloudWatchNamespace are CloudWatch's.
const (
	CloudWatchVersion   = "2010-08-01"
	CloudWatchNamespace = "http://monitoring.amazonaws.com/doc/2010-08-01/"
)

func (s *Server) cloudwatchActions() map[string]handler {
	return map[string]handler{
		"PutMetricAlarm": s.scaling(s.putMetricAlarm),
		"DescribeAlarms": s.scaling(s.describeAlarms),
		"DeleteAlarms":   s.scaling(s.deleteAlarms),
	}
}

var cloudwatchUnserved = map[string]bool{
	"GetMetricStatistics": true, "ListMetrics": true, "PutMetricData": true, "DescribeAlarmHistory": true,
	"DescribeAlarmsForMetric": true, "DisableAlarmActions": true, "EnableAlarmActions": true, "SetAlarmState": true,
}

func alarmARN(name string) string { return "arn:aws:cloudwatch:clb:000000000000:alarm:" + name }

// comparisons maps boto 2's operators (it sends the long names; older scripts the short) too.
var comparisons = map[string]string{">": "GreaterThanThreshold", ">=": "GreaterThanOrEqualToThreshold", "<": "LessThanThreshold", "<=": "LessThanOrEqualToThreshold"}

func (s *Server) putMetricAlarm(req *request) (any, error) {
	a := autoscale.Alarm{Description: req.p.get("AlarmDescription"), Namespace: req.p.get("Namespace"), Unit: req.p.get("Unit"),
		Actions: req.p.list("AlarmActions"), OKActions: req.p.list("OKActions")}
	var err error
	for _, f := range []struct {
		name string
		dst  *string
	}{{"AlarmName", &a.Name}, {"MetricName", &a.Metric}, {"Statistic", &a.Statistic}, {"ComparisonOperator", &a.Comparison}} {
		if *f.dst, err = req.p.required(f.name); err != nil {
			return nil, err
		}
	}
	if c, ok := comparisons[a.Comparison]; ok {
		a.Comparison = c
	}
	period, _, err := intParam(req, "Period", true)
	if err != nil {
		return nil, err
	}
	if period < 1 {
		return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "Period %d: must be at least 1 second", period)
	}
	a.Period = time.Duration(period) * time.Second
	if a.EvaluationPeriods, _, err = intParam(req, "EvaluationPeriods", true); err != nil {
		return nil, err
	}
	th, err := req.p.required("Threshold")
	if err != nil {
		return nil, err
	}
	if a.Threshold, err = strconv.ParseFloat(th, 64); err != nil {
		return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "Threshold %q: want a number", clip(th))
	}
	for _, d := range req.p.structs("Dimensions") {
		if d["Name"] == "AutoScalingGroupName" {
			a.Group = d["Value"]
		}
	}
	if a.Group == "" {
		return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "clbd evaluates alarms on Auto Scaling groups: give the dimension AutoScalingGroupName")
	}
	if err := s.d.Scaling.PutAlarm(a); err != nil {
		if errors.Is(err, autoscale.ErrInvalid) {
			return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "%v", err)
		}
		return nil, err
	}
	return nil, nil
}

type metricAlarmXML struct {
	AlarmName                          string
	AlarmArn                           string
	AlarmDescription                   string `xml:",omitempty"`
	ActionsEnabled                     bool
	OKActions                          xmlList[string]
	AlarmActions                       xmlList[string]
	InsufficientDataActions            xmlList[string]
	StateValue                         string
	StateReason                        string
	StateUpdatedTimestamp              string
	MetricName                         string
	Namespace                          string
	Statistic                          string
	Dimensions                         xmlList[dimensionXML]
	Period                             int
	Unit                               string `xml:",omitempty"`
	EvaluationPeriods                  int
	Threshold                          float64
	ComparisonOperator                 string
	AlarmConfigurationUpdatedTimestamp string
}

type dimensionXML struct{ Name, Value string }

func (s *Server) describeAlarms(req *request) (any, error) {
	names := req.p.list("AlarmNames")
	state := req.p.get("StateValue")
	prefix := req.p.get("AlarmNamePrefix")
	out := xmlList[metricAlarmXML]{}
	for _, a := range s.d.Scaling.Alarms() {
		if len(names) > 0 && !slices.Contains(names, a.Name) || state != "" && a.State != state || prefix != "" && (len(a.Name) < len(prefix) || a.Name[:len(prefix)] != prefix) {
			continue
		}
		out = append(out, metricAlarmXML{AlarmName: a.Name, AlarmArn: alarmARN(a.Name), AlarmDescription: a.Description, ActionsEnabled: true,
			OKActions: nonNil(a.OKActions), AlarmActions: nonNil(a.Actions), InsufficientDataActions: xmlList[string]{},
			StateValue: a.State, StateReason: a.StateReason, StateUpdatedTimestamp: asTime(a.StateUpdated), MetricName: a.Metric,
			Namespace: a.Namespace, Statistic: a.Statistic, Dimensions: xmlList[dimensionXML]{{"AutoScalingGroupName", a.Group}},
			Period: int(a.Period / time.Second), Unit: a.Unit, EvaluationPeriods: a.EvaluationPeriods, Threshold: a.Threshold,
			ComparisonOperator: a.Comparison, AlarmConfigurationUpdatedTimestamp: asTime(a.Updated)})
	}
	return struct {
		MetricAlarms xmlList[metricAlarmXML]
	}{out}, nil
}

func nonNil(v []string) xmlList[string] {
	if v == nil {
		return xmlList[string]{}
	}
	return xmlList[string](v)
}

func (s *Server) deleteAlarms(req *request) (any, error) {
	names := req.p.list("AlarmNames")
	if len(names) == 0 {
		_, err := req.p.required("AlarmNames.member.1")
		return nil, err
	}
	if err := s.d.Scaling.DeleteAlarms(names...); err != nil {
		if errors.Is(err, autoscale.ErrNotFound) {
			return nil, errorf(http.StatusNotFound, "ResourceNotFound", "%v", err)
		}
		return nil, err
	}
	return nil, nil
}
