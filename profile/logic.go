package profile

import (
	"text/template"
	"text/template/parse"
)

// LogicUse is a place where a template uses a value from the network other
// than by printing it whole or testing it; see FindLogicUses.
type LogicUse struct {
	// Root is the top-level field whose value is used, e.g. "Hostname" or
	// "Labels"; "" when the template can reach every field (through its
	// dot, e.g. {{index . "Hostname"}}).
	Root string
	// Where is the position in the template, "name:line:col".
	Where string
	// What is the action, as written.
	What string
}

// FindLogicUses walks every template associated with t and lists the
// places where a value from the network is used other than
//
//   - printed whole, as the only command of an action: {{.Hostname}},
//     {{$.Labels.os}};
//   - tested, as the condition of an if: {{if .Hostname}},
//     {{else if not .UUID}}, {{if and .Hostname .IP}}.
//
// leaf classifies a field chain as it appears after the dot (or after $):
// root is the top-level field holding values from the network ("" for
// trusted data), whole reports whether the chain names one complete value
// (e.g. ["Labels" "os"], but not ["Labels"]).
//
// A renderer that prints only placeholders for values, and encodes the real
// values into the output afterwards, is exact for templates without logic
// uses: printing a placeholder puts the value in the same place, and a
// placeholder is non-empty exactly when the value is, so conditions take
// the same branch. Everything else (an argument of eq, printf, index, a
// pipeline, with, range, a variable, a template call, the whole dot) sees
// a placeholder instead of the value and is listed, so the renderer can
// use the real value there, after validating it strictly.
//
// Inside range and with over trusted data the dot is that data, not the
// machine's, so fields there are not values from the network; $ always
// is the template's data.
func FindLogicUses(t *template.Template, leaf func(field []string) (root string, whole bool)) []LogicUse {
	a := &logicWalker{leaf: leaf}
	for _, tt := range t.Templates() {
		if tt.Tree == nil || tt.Tree.Root == nil {
			continue
		}
		a.tree = tt.Tree
		a.list(tt.Tree.Root, true)
	}
	return a.uses
}

type logicWalker struct {
	leaf func([]string) (string, bool)
	tree *parse.Tree
	uses []LogicUse
}

func (a *logicWalker) add(root string, n parse.Node) {
	where, _ := a.tree.ErrorContext(n)
	what := n.String()
	if len(what) > 80 {
		what = what[:80] + "…"
	}
	a.uses = append(a.uses, LogicUse{Root: root, Where: where, What: what})
}

// list walks a list of nodes; dotRoot tells whether the dot is the
// template's data.
func (a *logicWalker) list(l *parse.ListNode, dotRoot bool) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.ActionNode:
			if a.printsWhole(n.Pipe, dotRoot) {
				continue
			}
			a.logic(n.Pipe, dotRoot, n)
		case *parse.IfNode:
			if !a.tests(n.Pipe, dotRoot) {
				a.logic(n.Pipe, dotRoot, n)
			}
			a.list(n.List, dotRoot)
			a.list(n.ElseList, dotRoot)
		case *parse.WithNode:
			body := false
			if isDot(n.Pipe, dotRoot) {
				body = true // {{with .}}: the dot stays the data
			} else {
				a.logic(n.Pipe, dotRoot, n)
			}
			a.list(n.List, body)
			a.list(n.ElseList, dotRoot)
		case *parse.RangeNode:
			a.logic(n.Pipe, dotRoot, n)
			a.list(n.List, false)
			a.list(n.ElseList, dotRoot)
		case *parse.TemplateNode:
			// The called template is walked with a dot that is the data;
			// {{template "t" .}} passes exactly that.
			if n.Pipe != nil && !isDot(n.Pipe, dotRoot) {
				a.logic(n.Pipe, dotRoot, n)
			}
		}
	}
}

// printsWhole: an action that prints one network value whole, or a
// trusted field or literal.
func (a *logicWalker) printsWhole(p *parse.PipeNode, dotRoot bool) bool {
	if p == nil || len(p.Decl) > 0 || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return false
	}
	field, ok := chain(p.Cmds[0].Args[0], dotRoot)
	if !ok {
		return false
	}
	if len(field) == 0 {
		return false // {{.}} or {{$}}: the whole data, printed
	}
	root, whole := a.leaf(field)
	return root == "" || whole
}

// tests: the condition of an if is one field, or not/and/or of fields.
func (a *logicWalker) tests(p *parse.PipeNode, dotRoot bool) bool {
	if p == nil || len(p.Decl) > 0 || len(p.Cmds) != 1 {
		return false
	}
	args := p.Cmds[0].Args
	if len(args) > 1 {
		id, ok := args[0].(*parse.IdentifierNode)
		if !ok || (id.Ident != "not" && id.Ident != "and" && id.Ident != "or") {
			return false
		}
		args = args[1:]
	}
	for _, arg := range args {
		if _, ok := chain(arg, dotRoot); !ok {
			return false
		}
	}
	return true
}

// logic records every network value a pipeline reaches.
func (a *logicWalker) logic(p *parse.PipeNode, dotRoot bool, at parse.Node) {
	if p == nil {
		return
	}
	for _, c := range p.Cmds {
		for _, arg := range c.Args {
			a.reach(arg, dotRoot, at)
		}
	}
}

func (a *logicWalker) reach(n parse.Node, dotRoot bool, at parse.Node) {
	if field, ok := chain(n, dotRoot); ok {
		if len(field) == 0 {
			a.add("", at)
			return
		}
		if root, _ := a.leaf(field); root != "" {
			a.add(root, at)
		}
		return
	}
	switch n := n.(type) {
	case *parse.PipeNode:
		a.logic(n, dotRoot, at)
	case *parse.ChainNode:
		a.reach(n.Node, dotRoot, at)
	}
}

// chain returns the field chain a node reads from the template's data: a
// field of the dot when the dot is the data, a field of $, or the data
// itself (an empty chain). ok is false for anything else (literals,
// functions, pipelines, fields of other variables or of a dot that is
// trusted data).
func chain(n parse.Node, dotRoot bool) (field []string, ok bool) {
	switch n := n.(type) {
	case *parse.FieldNode:
		if dotRoot {
			return n.Ident, true
		}
	case *parse.DotNode:
		if dotRoot {
			return nil, true
		}
	case *parse.VariableNode:
		if len(n.Ident) > 0 && n.Ident[0] == "$" {
			return n.Ident[1:], true
		}
	}
	return nil, false
}

// isDot reports whether a pipeline is just the data ({{with .}},
// {{template "t" .}}).
func isDot(p *parse.PipeNode, dotRoot bool) bool {
	if p == nil || len(p.Decl) > 0 || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return false
	}
	field, ok := chain(p.Cmds[0].Args[0], dotRoot)
	return ok && len(field) == 0
}

// walkFields calls f with every field chain a tree reads from the dot or
// $, wherever it is (an empty chain for the dot or $ itself).
func walkFields(n parse.Node, f func([]string)) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, c := range n.Nodes {
				walkFields(c, f)
			}
		}
	case *parse.ActionNode:
		walkFields(n.Pipe, f)
	case *parse.PipeNode:
		if n != nil {
			for _, c := range n.Cmds {
				walkFields(c, f)
			}
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walkFields(a, f)
		}
	case *parse.FieldNode:
		f(n.Ident)
	case *parse.DotNode:
		f(nil)
	case *parse.VariableNode:
		if len(n.Ident) > 0 && n.Ident[0] == "$" {
			f(n.Ident[1:])
		}
	case *parse.ChainNode:
		walkFields(n.Node, f)
	case *parse.IfNode:
		walkFields(n.Pipe, f)
		walkFields(n.List, f)
		walkFields(n.ElseList, f)
	case *parse.RangeNode:
		walkFields(n.Pipe, f)
		walkFields(n.List, f)
		walkFields(n.ElseList, f)
	case *parse.WithNode:
		walkFields(n.Pipe, f)
		walkFields(n.List, f)
		walkFields(n.ElseList, f)
	case *parse.TemplateNode:
		walkFields(n.Pipe, f)
	}
}
