package agent

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"clb/agent/config"
	"clb/internal/testutil"
)

// The Auto Scaling and CloudWatch fronts driven by boto 2.49 and boto3 from Debian: the
// tutorial's group and policy steps (seed 002, with its Trigger as policies + alarms) against
// an in-process clbd whose launcher starts real local processes (docs/autoscale/local; the
// instances run sleep, and register nowhere: they stay Pending within the grace period).

// asgEnv is a clbd with the AWS front, service my-lb and the local launcher.
type asgEnv struct {
	*elbEnv
	instDir string
}

func startASGEnv(t *testing.T) *asgEnv {
	t.Helper()
	requireHaproxy(t)
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("/usr/bin/python3 not installed (make test installs python3-boto, python3-boto3)")
	}
	docs, err := filepath.Abs("../docs/autoscale/local")
	if err != nil {
		t.Fatal(err)
	}
	dir := testutil.ShortDir(t)
	e := &asgEnv{elbEnv: &elbEnv{t: t, logs: &testutil.SyncBuffer{}}, instDir: filepath.Join(dir, "instances")}
	t.Cleanup(func() { killLocalInstances(e.instDir) })
	pw := filepath.Join(dir, "pw")
	awsWriteFile(t, pw, testPassword+"\n", 0o600)
	keys := filepath.Join(dir, "keys.yaml")
	awsWriteFile(t, keys, fmt.Sprintf("keys:\n  - {id: %s, secret: %s, scope: admin}\n  - {id: %s, secret: %s, scope: register, services: [\"web*\"]}\n",
		awsAdminID, awsAdminSecret, awsRegID, awsRegSecret), 0o600)
	yaml := fmt.Sprintf(`services:
  my-lb:
    listeners:
      - port: %d
        address: 127.0.0.1
        member_port: 8080
launchers:
  default:
    launch: %q
    terminate: %q
    timeout: 20s
autoscale:
  interval: 100ms
  backoff_min: 500ms
`, testutil.FreePort(t), fmt.Sprintf("%q %q /bin/sleep 600", docs+"/launch.sh", e.instDir), fmt.Sprintf("%q %q", docs+"/terminate.sh", e.instDir))
	cfg := config.Defaults()
	if err := config.Decode(&cfg, []byte(yaml), "test"); err != nil {
		t.Fatal(err)
	}
	e.aws = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg.Listen, cfg.StateDir, cfg.Templates, cfg.AWSListen = "127.0.0.1:0", dir, filepath.Join(dir, "templates"), e.aws
	cfg.Managed, cfg.Output = true, filepath.Join(dir, config.ManagedCfgName)
	cfg.PasswordFile, cfg.KeysFile = pw, keys
	cfg.RequestTimeout = 15 * time.Second
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, addr := startAgent(t, &cfg, Options{Logger: log})
	e.a, e.api = a, addr.String()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("clbd log:\n%s", e.logs.String())
		}
	})
	return e
}

// killLocalInstances kills what the local launcher started (the instances outlive clbd).
func killLocalInstances(dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// runningInstances counts the live processes the local launcher started.
func runningInstances(dir string) int {
	n := 0
	files, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err == nil && strings.Fields(string(st))[2] != "Z" {
			n++
		}
	}
	return n
}

// waitPy re-runs code (bounded) until it sets _ to True.
func waitPy(t *testing.T, d *pyDriver, limit time.Duration, what, code string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if v := d.run(code); v == true {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestAutoscaleBoto2Tutorial runs boto's Autoscale tutorial (seed 002) with boto 2.49: the
// launch configuration and group of the text, activities, the trigger as two policies and
// two CloudWatch alarms, capacity changes, termination and cleanup.
func TestAutoscaleBoto2Tutorial(t *testing.T) {
	e := startASGEnv(t)
	d := startPython(t)
	host, port, _ := net.SplitHostPort(e.aws)
	d.run(fmt.Sprintf(`
import boto.ec2.autoscale, boto.ec2.cloudwatch, boto.exception, datetime
from boto.regioninfo import RegionInfo
from boto.ec2.autoscale import AutoScaleConnection, LaunchConfiguration, AutoScalingGroup, ScalingPolicy
from boto.ec2.cloudwatch import MetricAlarm
conn = AutoScaleConnection(%[1]q, %[2]q, region=RegionInfo(name="local", endpoint=%[3]q), port=%[4]s, is_secure=False)
cw = boto.ec2.cloudwatch.CloudWatchConnection(%[1]q, %[2]q, region=RegionInfo(name="local", endpoint=%[3]q), port=%[4]s, is_secure=False)
`, awsAdminID, awsAdminSecret, host, port))
	if got := d.run(`_ = conn.get_all_groups()`); len(got.([]any)) != 0 {
		t.Fatalf("get_all_groups() = %v, want none", got)
	}
	d.run(`
lc = LaunchConfiguration(name='my-launch_config', image_id='my-ami', key_name='my_key_name', security_groups=['my_security_groups'])
conn.create_launch_configuration(lc)
_ = [(c.name, c.image_id, c.key_name, list(c.security_groups)) for c in conn.get_all_launch_configurations(names=['my-launch_config'])]
assert _ == [('my-launch_config', 'my-ami', 'my_key_name', ['my_security_groups'])], _
`)
	// boto 2 signs with a one-second timestamp: the same request again within it is a replay.
	time.Sleep(1100 * time.Millisecond)
	d.fails(`conn.create_launch_configuration(lc)`, "AlreadyExists")
	d.run(`
ag = AutoScalingGroup(group_name='my_group', load_balancers=['my-lb'], availability_zones=['us-east-1a', 'us-east-1b'],
                      launch_config=lc, min_size=4, max_size=4, connection=conn)
conn.create_auto_scaling_group(ag)
`)
	waitPy(t, d, 20*time.Second, "4 instances launched", `
g = conn.get_all_groups(names=['my_group'])[0]
_ = len(g.instances) == 4 and all(i.lifecycle_state == 'Pending' for i in g.instances)
`)
	zones := d.run(`_ = sorted(i.availability_zone for i in conn.get_all_groups(names=['my_group'])[0].instances)`)
	if fmt.Sprint(zones) != "[us-east-1a us-east-1a us-east-1b us-east-1b]" {
		t.Errorf("instances by zone = %v, want two in each", zones)
	}
	if n := runningInstances(e.instDir); n != 4 {
		t.Errorf("%d instance processes running, want 4", n)
	}
	acts := d.run(`
acts = ag.get_activities()
assert all(isinstance(a.start_time, datetime.datetime) for a in acts), [a.start_time for a in acts]
_ = [(a.description, a.status_code, a.progress) for a in conn.get_all_activities(ag)]
`)
	launches := 0
	for _, a := range acts.([]any) {
		if s := fmt.Sprint(a); strings.Contains(s, "Launching a new instance") && strings.Contains(s, "Successful") {
			launches++
		}
	}
	if launches != 4 {
		t.Errorf("activities = %v, want 4 successful launches", acts)
	}

	// The tutorial's trigger, as policies and alarms: max 8, +10 above 80%% CPU for 6 min,
	// -5 below 40%%.
	arn := d.run(`
ag = conn.get_all_groups(names=['my_group'])[0]
ag.max_size = 8
ag.update()
conn.create_scaling_policy(ScalingPolicy(name='scale_up', adjustment_type='ChangeInCapacity', as_name='my_group', scaling_adjustment=10, cooldown=180))
conn.create_scaling_policy(ScalingPolicy(name='scale_down', adjustment_type='ChangeInCapacity', as_name='my_group', scaling_adjustment=-5, cooldown=180))
up = conn.get_all_policies(as_group='my_group', policy_names=['scale_up'])[0]
down = conn.get_all_policies(as_group='my_group', policy_names=['scale_down'])[0]
cw.create_alarm(MetricAlarm(name='scale_up_on_cpu', namespace='AWS/EC2', metric='CPUUtilization', statistic='Average',
    comparison='>', threshold='80', period='60', evaluation_periods=6, alarm_actions=[up.policy_arn], dimensions={'AutoScalingGroupName': 'my_group'}))
cw.create_alarm(MetricAlarm(name='scale_down_on_cpu', namespace='AWS/EC2', metric='CPUUtilization', statistic='Average',
    comparison='<', threshold='40', period='60', evaluation_periods=6, alarm_actions=[down.policy_arn], dimensions={'AutoScalingGroupName': 'my_group'}))
alarms = cw.describe_alarms(alarm_names=['scale_up_on_cpu', 'scale_down_on_cpu'])
assert sorted((a.name, a.comparison, a.threshold, a.evaluation_periods, a.state_value) for a in alarms) == [
    ('scale_down_on_cpu', '<', 40.0, 6, 'INSUFFICIENT_DATA'), ('scale_up_on_cpu', '>', 80.0, 6, 'INSUFFICIENT_DATA')], [(a.name, a.comparison, a.threshold, a.evaluation_periods, a.state_value) for a in alarms]
_ = up.policy_arn
`)
	if !strings.HasPrefix(fmt.Sprint(arn), "arn:aws:autoscaling:") {
		t.Errorf("policy ARN %v", arn)
	}
	// Executing scale_up: 4 + 10, clamped to the max 8.
	d.run(`conn.execute_policy('scale_up', as_group='my_group')`)
	waitPy(t, d, 20*time.Second, "8 instances", `
g = conn.get_all_groups(names=['my_group'])[0]
_ = g.desired_capacity == 8 and len(g.instances) == 8`)
	d.fails(`conn.get_all_groups(names=['my_group'])[0].set_capacity(9)`, "ValidationError")
	d.run(`conn.get_all_groups(names=['my_group'])[0].set_capacity(5)`)
	waitPy(t, d, 20*time.Second, "5 instances", `
g = conn.get_all_groups(names=['my_group'])[0]
_ = g.desired_capacity == 5 and len(g.instances) == 5`)
	// Terminate one, decrementing the capacity.
	d.run(`
iid = conn.get_all_groups(names=['my_group'])[0].instances[0].instance_id
act = conn.terminate_instance(iid, decrement_capacity=True)
assert act.status_code == 'InProgress', act.status_code
`)
	waitPy(t, d, 20*time.Second, "4 instances", `
g = conn.get_all_groups(names=['my_group'])[0]
_ = g.desired_capacity == 4 and len(g.instances) == 4 and iid not in [i.instance_id for i in g.instances]`)
	d.fails(`conn.terminate_instance('i-nonexistent', decrement_capacity=True)`, "ValidationError")
	d.fails(`conn.delete_launch_configuration('my-launch_config')`, "ResourceInUse")
	d.fails(`conn.get_all_groups(names=['my_group'])[0].delete()`, "ResourceInUse")

	// Cleanup the tutorial's way: alarms, instances (min = max = 0), group, launch config.
	d.run(`
cw.delete_alarms(['scale_up_on_cpu', 'scale_down_on_cpu'])
assert cw.describe_alarms() == [], cw.describe_alarms()
conn.get_all_groups(names=['my_group'])[0].shutdown_instances()
`)
	waitPy(t, d, 20*time.Second, "no instance", `_ = len(conn.get_all_groups(names=['my_group'])[0].instances) == 0`)
	time.Sleep(1100 * time.Millisecond) // the refused delete above was the same request
	d.run(`
conn.get_all_groups(names=['my_group'])[0].delete()
conn.delete_launch_configuration('my-launch_config')
_ = (conn.get_all_groups(), conn.get_all_launch_configurations())
assert _ == ([], []), _
`)
	if n := runningInstances(e.instDir); n != 0 {
		t.Errorf("%d instance processes still running after the cleanup", n)
	}
}

// TestAutoscaleBoto3 drives the same API with boto3 (POST form bodies), and an alarm that
// really fires: HealthyHostCount below 1 (the instances never register) runs its policy once
// per cooldown.
func TestAutoscaleBoto3(t *testing.T) {
	e := startASGEnv(t)
	d := startPython(t)
	d.run(fmt.Sprintf(`
import boto3, botocore.config
kw = dict(endpoint_url="http://%s", region_name="us-east-1", aws_access_key_id=%q, aws_secret_access_key=%q, config=botocore.config.Config(retries={"max_attempts": 1}))
asg = boto3.client("autoscaling", **kw)
cw = boto3.client("cloudwatch", **kw)
`, e.aws, awsAdminID, awsAdminSecret))
	d.run(`
asg.create_launch_configuration(LaunchConfigurationName='lc', ImageId='img-1', InstanceType='m1.small', UserData='aGVsbG8=')
asg.create_auto_scaling_group(AutoScalingGroupName='g', LaunchConfigurationName='lc', MinSize=1, MaxSize=3, DesiredCapacity=2,
    AvailabilityZones=['a'], LoadBalancerNames=['my-lb'], HealthCheckType='ELB', HealthCheckGracePeriod=300)
arn = asg.put_scaling_policy(AutoScalingGroupName='g', PolicyName='up', AdjustmentType='ChangeInCapacity', ScalingAdjustment=1, Cooldown=600)['PolicyARN']
`)
	d.fails(`asg.put_scaling_policy(AutoScalingGroupName='g', PolicyName='tt', PolicyType='TargetTrackingScaling', TargetTrackingConfiguration={'TargetValue': 1.0, 'PredefinedMetricSpecification': {'PredefinedMetricType': 'ASGAverageCPUUtilization'}})`, "ValidationError")
	d.fails(`asg.create_auto_scaling_group(AutoScalingGroupName='h', LaunchConfigurationName='lc', MinSize=1, MaxSize=3, LoadBalancerNames=['nope'])`, "ValidationError")
	d.fails(`asg.set_desired_capacity(AutoScalingGroupName='nope', DesiredCapacity=1)`, "ValidationError")
	waitPy(t, d, 20*time.Second, "2 instances", `
g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=['g'])['AutoScalingGroups'][0]
_ = len(g['Instances']) == 2 and g['LoadBalancerNames'] == ['my-lb'] and g['HealthCheckType'] == 'ELB'`)
	d.run(`
ids = [i['InstanceId'] for i in asg.describe_auto_scaling_groups(AutoScalingGroupNames=['g'])['AutoScalingGroups'][0]['Instances']]
got = asg.describe_auto_scaling_instances(InstanceIds=ids)['AutoScalingInstances']
assert sorted(i['InstanceId'] for i in got) == sorted(ids) and all(i['AutoScalingGroupName'] == 'g' for i in got), got
cw.put_metric_alarm(AlarmName='nobody-healthy', Namespace='clb', MetricName='HealthyHostCount', Statistic='Minimum', Period=1,
    EvaluationPeriods=1, Threshold=1, ComparisonOperator='LessThanThreshold', AlarmActions=[arn],
    Dimensions=[{'Name': 'AutoScalingGroupName', 'Value': 'g'}])
`)
	waitPy(t, d, 20*time.Second, "the alarm to fire and scale to 3", `
a = cw.describe_alarms(AlarmNames=['nobody-healthy'])['MetricAlarms'][0]
g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=['g'])['AutoScalingGroups'][0]
_ = a['StateValue'] == 'ALARM' and g['DesiredCapacity'] == 3 and len(g['Instances']) == 3`)
	// The policy's cooldown (600 s) holds it there, and the max would anyway.
	time.Sleep(time.Second)
	d.run(`
g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=['g'])['AutoScalingGroups'][0]
assert g['DesiredCapacity'] == 3, g['DesiredCapacity']
acts = asg.describe_scaling_activities(AutoScalingGroupName='g')['Activities']
assert any('monitor alarm nobody-healthy' in a['Cause'] for a in acts), [a['Cause'] for a in acts]
assert acts[0]['StartTime'] >= acts[-1]['StartTime']
pols = asg.describe_policies(AutoScalingGroupName='g')['ScalingPolicies']
assert [(p['PolicyName'], [x['AlarmName'] for x in p['Alarms']]) for p in pols] == [('up', ['nobody-healthy'])], pols
cw.delete_alarms(AlarmNames=['nobody-healthy'])
`)
	time.Sleep(1100 * time.Millisecond) // the same request again within a second is a replay
	d.fails(`cw.delete_alarms(AlarmNames=['nobody-healthy'])`, "ResourceNotFound")
	d.fails(`asg.delete_auto_scaling_group(AutoScalingGroupName='g')`, "ResourceInUse")
	time.Sleep(1100 * time.Millisecond)
	d.run(`
asg.delete_auto_scaling_group(AutoScalingGroupName='g', ForceDelete=True)
assert asg.describe_auto_scaling_groups()['AutoScalingGroups'] == []
asg.delete_launch_configuration(LaunchConfigurationName='lc')
`)
	if n := runningInstances(e.instDir); n != 0 {
		t.Errorf("%d instance processes still running after ForceDelete", n)
	}
}
