"""Templates, tables and units as docker's CLI prints them."""

from __future__ import annotations

import io

import pytest
from dockyard.client import output
from dockyard.client.output import Template, TemplateError


@pytest.mark.parametrize("tmpl,dot,want", [
    ("{{.ID}}", {"ID": "abc"}, "abc"),
    ("{{.State.Status}}", {"State": {"Status": "running"}}, "running"),
    ("{{json .}}", {"A": 1, "B": [1, "x"]}, '{"A":1,"B":[1,"x"]}'),
    ("{{json .Config.Env}}", {"Config": {"Env": ["A=1"]}}, '["A=1"]'),
    ("{{.Missing}}", {}, "<no value>"),
    ("{{.Config.Env}}", {"Config": {"Env": ["A=1", "B=2"]}}, "[A=1 B=2]"),
    ("{{.Labels}}", {"Labels": {"b": "2", "a": "1"}}, "map[a:1 b:2]"),
    ("{{.Running}}", {"Running": True}, "true"),
    ("{{join .Args \",\"}}", {"Args": ["a", "b"]}, "a,b"),
    ("{{.Name | upper}}", {"Name": "web"}, "WEB"),
    ("{{upper .Name}}-{{lower \"X\"}}", {"Name": "web"}, "WEB-x"),
    ("{{index .Labels \"k\"}}", {"Labels": {"k": "v"}}, "v"),
    ("{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}",
     {"Mounts": [{"Source": "/a", "Destination": "/b"}, {"Source": "/c", "Destination": "/d"}]},
     "/a:/b /c:/d "),
    ("{{range .X}}x{{else}}empty{{end}}", {"X": []}, "empty"),
    ("{{if .State.Running}}up{{else}}down{{end}}", {"State": {"Running": False}}, "down"),
    ("{{if eq .S \"a\"}}A{{else if eq .S \"b\"}}B{{else}}C{{end}}", {"S": "b"}, "B"),
    ("{{with .State}}{{.Pid}}{{end}}", {"State": {"Pid": 42}}, "42"),
    ("{{len .L}}", {"L": [1, 2, 3]}, "3"),
    ("{{printf \"%s=%d\" .K .V}}", {"K": "a", "V": 1}, "a=1"),
    ("a {{- \" b \" -}} c", {}, "a b c"),
    ("{{.ExitCode}}", {"ExitCode": 137}, "137"),
    ("{{(index .Ports \"80/tcp\")}}", {"Ports": {"80/tcp": None}}, "<no value>"),
])
def test_template(tmpl, dot, want):
    assert Template(tmpl).render(dot) == want


@pytest.mark.parametrize("bad", ["{{.ID", "{{end}}", "{{range .X}}", "{{nosuchfunc .X}}",
                                 "{{if}}{{end}}x{{"])
def test_template_errors_are_reported(bad):
    with pytest.raises(TemplateError):
        Template(bad).render({"X": [1]})


def test_tabulate_matches_docker_tabwriter():
    text = output.tabulate(["CONTAINER ID\tIMAGE\tNAMES", "0123456789ab\tbusybox\tweb"])
    assert text == ("CONTAINER ID   IMAGE     NAMES\n"
                    "0123456789ab   busybox   web\n")


def test_render_rows_table_json_quiet_and_custom():
    rows = [{"ID": "a1", "Name": "x"}, {"ID": "b22", "Name": "yy"}]
    headers = {"ID": "CONTAINER ID", "Name": "NAME"}
    out = io.StringIO()
    output.render_rows(rows, None, "table {{.ID}}\t{{.Name}}", headers, out)
    assert out.getvalue().splitlines() == ["CONTAINER ID   NAME", "a1             x",
                                          "b22            yy"]
    out = io.StringIO()
    output.render_rows(rows, "json", "", headers, out)
    assert out.getvalue() == '{"ID":"a1","Name":"x"}\n{"ID":"b22","Name":"yy"}\n'
    out = io.StringIO()
    output.render_rows(rows, "{{.Name}}\\t{{.ID}}", "", headers, out)
    assert out.getvalue() == "x\ta1\nyy\tb22\n"
    out = io.StringIO()
    output.render_rows(rows, None, "", headers, out, quiet_field="ID", quiet=True)
    assert out.getvalue() == "a1\nb22\n"
    out = io.StringIO()
    output.render_rows(rows, "table", "table {{.Name}}", headers, out)
    assert out.getvalue().splitlines() == ["NAME", "x", "yy"]
    out = io.StringIO()
    output.render_rows(rows, "table {{.Name}}", "", headers, out)
    assert out.getvalue().splitlines() == ["NAME", "x", "yy"]


@pytest.mark.parametrize("n,want", [(0, "0B"), (999, "999B"), (36445, "36.45kB"),
                                    (3147001, "3.147MB"), (1_500_000_000, "1.5GB")])
def test_human_size(n, want):
    assert output.human_size(n) == want


def test_sizes_with_precision_and_binary():
    assert output.human_size(4_261_000, 3) == "4.26MB"
    assert output.bytes_size(1536 * 1024) == "1.5MiB"
    assert output.bytes_size(512) == "512B"


@pytest.mark.parametrize("secs,want", [(0.5, "Less than a second"), (1, "1 second"),
                                       (42, "42 seconds"), (61, "About a minute"),
                                       (600, "10 minutes"), (3600, "About an hour"),
                                       (5 * 3600, "5 hours"), (3 * 86400, "3 days"),
                                       (20 * 86400, "2 weeks"), (90 * 86400, "3 months"),
                                       (800 * 86400, "2 years")])
def test_human_duration(secs, want):
    assert output.human_duration(secs) == want


def test_ellipsis_and_time_parsing():
    assert output.ellipsis("abcdef", 4) == "abc…"
    assert output.ellipsis("abc", 4) == "abc"
    assert output.parse_time("0001-01-01T00:00:00Z") is None
    assert output.parse_time("1970-01-01T00:00:10.5Z") == pytest.approx(10.5)
    assert output.parse_time("1970-01-01T01:00:10+01:00") == pytest.approx(10)


def test_row_label_method_and_json_without_it():
    row = output.Row({"ID": "a"})
    row.labels = {"com.x": "1"}
    assert Template('{{.Label "com.x"}}-{{.Label "nope"}}-{{.ID}}').render(row) == "1--a"
    assert Template("{{json .}}").render(row) == '{"ID":"a"}'
    with pytest.raises(TemplateError, match="not a method"):
        Template('{{.ID "x"}}').render(row)


def test_fields_of_a_parenthesised_pipeline():
    from dockyard.client.output import Template

    obj = {"NetworkSettings": {"Networks": {"dy-net": {"IPAddress": "10.1.2.3",
                                                       "IPAMConfig": {"IPv4Address": "10.1.2.3"}}}}}
    tmpl = Template('{{(index .NetworkSettings.Networks "dy-net").IPAddress}}/'
                    '{{ (index .NetworkSettings.Networks "dy-net").IPAMConfig.IPv4Address }}')
    assert tmpl.render(obj) == "10.1.2.3/10.1.2.3"
