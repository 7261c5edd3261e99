using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Spa.Silo;

/// <summary>
/// The subset of Jinja that Hugging Face chat templates are written in, rendered as <c>transformers</c> renders them
/// (<c>trim_blocks</c> and <c>lstrip_blocks</c> on): text, <c>{{ expression }}</c>, <c>{% if/elif/else %}</c>,
/// <c>{% for x in xs %}</c> with <c>loop.index</c>, <c>index0</c>, <c>first</c>, <c>last</c> and <c>length</c>,
/// <c>{% set %}</c>, comments, and <c>-</c> whitespace control. Expressions: literals, lists and dicts, names,
/// <c>.attr</c>, <c>[key]</c> and slices, calls of <c>raise_exception</c> and of the string methods
/// <c>strip</c>, <c>lstrip</c>, <c>rstrip</c>, <c>startswith</c>, <c>endswith</c>, <c>upper</c>, <c>lower</c> and
/// <c>items</c>, the operators <c>+ - * / // % ~ == != &lt; &gt; &lt;= &gt;= in not in and or not</c>,
/// <c>x if c else y</c>, the tests <c>is [not] defined/none/string/number</c>, and the filters <c>trim</c>,
/// <c>length</c>, <c>upper</c>, <c>lower</c>, <c>tojson</c>, <c>first</c>, <c>last</c> and <c>default</c>. Anything
/// else is refused when the template is parsed, so that a template either renders as Jinja would or not at all.
/// </summary>
public sealed class JinjaTemplate
{
    private readonly List<Node> _body;

    private JinjaTemplate(List<Node> body) => _body = body;

    /// <summary>Parses <paramref name="source"/>; throws <see cref="FormatException"/> naming what is not supported.</summary>
    public static JinjaTemplate Parse(string source)
    {
        var parser = new Parser(Lex(source));
        var body = parser.Block(out var end);
        if (end is not null) throw new FormatException($"unexpected {{% {end} %}}");
        return new JinjaTemplate(body);
    }

    /// <summary>Renders with <paramref name="variables"/>; a template's <c>raise_exception</c> throws <see cref="TemplateException"/>.</summary>
    public string Render(IReadOnlyDictionary<string, object?> variables)
    {
        var scope = new Dictionary<string, object?>(variables) { ["raise_exception"] = new Function("raise_exception") };
        var output = new StringBuilder();
        Run(_body, scope, output);
        return output.ToString();
    }

    // ---- lexing: text and tags, with transformers' trim_blocks and lstrip_blocks, and "-" trimming ----

    private enum Kind { Text, Output, Statement }

    private sealed record Piece(Kind Kind, string Content);

    private static List<Piece> Lex(string source)
    {
        var pieces = new List<Piece>();
        int at = 0;
        bool trimNext = false, blockBefore = false;
        while (at < source.Length)
        {
            int open = IndexOfTag(source, at);
            string text = open < 0 ? source[at..] : source[at..open];
            if (blockBefore && text.StartsWith('\n')) text = text[1..]; // trim_blocks
            if (trimNext) text = text.TrimStart();
            if (open < 0)
            {
                pieces.Add(new Piece(Kind.Text, text));
                break;
            }
            char type = source[open + 1];
            bool trimBefore = open + 2 < source.Length && source[open + 2] == '-';
            if (trimBefore) text = text.TrimEnd();
            else if (type is '%' or '#') text = StripLineStart(text); // lstrip_blocks
            pieces.Add(new Piece(Kind.Text, text));
            string close = type switch { '{' => "}}", '%' => "%}", _ => "#}" };
            int end = source.IndexOf(close, open + 2, StringComparison.Ordinal);
            if (end < 0) throw new FormatException($"a tag opened at {open} is never closed");
            var inner = source[(open + (trimBefore ? 3 : 2))..end];
            trimNext = inner.EndsWith('-');
            if (trimNext) inner = inner[..^1];
            if (type != '#') pieces.Add(new Piece(type == '{' ? Kind.Output : Kind.Statement, inner.Trim()));
            blockBefore = type is '%' or '#';
            at = end + 2;
        }
        return pieces;
    }

    private static int IndexOfTag(string source, int from)
    {
        for (int i = source.IndexOf('{', from); i >= 0 && i + 1 < source.Length; i = source.IndexOf('{', i + 1))
            if (source[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    // lstrip_blocks: spaces and tabs between the start of a line and a block tag are dropped.
    private static string StripLineStart(string text)
    {
        int i = text.Length;
        while (i > 0 && text[i - 1] is ' ' or '\t') i--;
        return i == 0 || text[i - 1] == '\n' ? text[..i] : text;
    }

    // ---- the tree ----

    private abstract record Node;
    private sealed record TextNode(string Text) : Node;
    private sealed record OutputNode(Expr Value) : Node;
    private sealed record IfNode(List<(Expr Condition, List<Node> Body)> Branches, List<Node>? Else) : Node;
    private sealed record ForNode(string[] Names, Expr Items, List<Node> Body) : Node;
    private sealed record SetNode(string Name, Expr Value) : Node;

    private abstract record Expr;
    private sealed record Literal(object? Value) : Expr;
    private sealed record Name(string Id) : Expr;
    private sealed record ListExpr(List<Expr> Items) : Expr;
    private sealed record DictExpr(List<(Expr Key, Expr Value)> Items) : Expr;
    private sealed record Attribute(Expr Target, string Attr) : Expr;
    private sealed record Index(Expr Target, Expr Key) : Expr;
    private sealed record Slice(Expr Target, Expr? From, Expr? To) : Expr;
    private sealed record Call(Expr Target, List<Expr> Args) : Expr;
    private sealed record Unary(string Op, Expr Operand) : Expr;
    private sealed record Binary(string Op, Expr Left, Expr Right) : Expr;
    private sealed record Test(Expr Operand, string Name, bool Negated) : Expr;
    private sealed record Filter(Expr Operand, string Name, List<Expr> Args) : Expr;
    private sealed record Conditional(Expr Condition, Expr Then, Expr Else) : Expr;

    private sealed record Function(string Name);

    private sealed record Method(object? Target, string Name);

    private sealed record Undefined(string Name);

    /// <summary>The loop variable of a for: its position among the items.</summary>
    private sealed record Loop(int Index0, int Length);

    private sealed class Parser(List<Piece> pieces)
    {
        private int _at;

        /// <summary>Nodes up to the end or to an end-of-block statement, returned in <paramref name="end"/> (null at the end).</summary>
        public List<Node> Block(out string? end)
        {
            var nodes = new List<Node>();
            while (_at < pieces.Count)
            {
                var piece = pieces[_at++];
                switch (piece.Kind)
                {
                    case Kind.Text:
                        if (piece.Content.Length > 0) nodes.Add(new TextNode(piece.Content));
                        break;
                    case Kind.Output:
                        nodes.Add(new OutputNode(Expression.Parse(piece.Content)));
                        break;
                    default:
                        var words = piece.Content.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries);
                        string keyword = words.Length > 0 ? words[0] : "", rest = words.Length > 1 ? words[1] : "";
                        switch (keyword)
                        {
                            case "if":
                                nodes.Add(If(rest));
                                break;
                            case "for":
                                nodes.Add(For(rest));
                                break;
                            case "set":
                                int equals = rest.IndexOf('=');
                                if (equals < 0) throw new FormatException($"{{% set {rest} %}} needs '='");
                                nodes.Add(new SetNode(rest[..equals].Trim(), Expression.Parse(rest[(equals + 1)..])));
                                break;
                            case "elif" or "else" or "endif" or "endfor":
                                end = piece.Content;
                                return nodes;
                            default:
                                throw new FormatException($"{{% {keyword} %}} is not supported");
                        }
                        break;
                }
            }
            end = null;
            return nodes;
        }

        private IfNode If(string condition)
        {
            var branches = new List<(Expr, List<Node>)>();
            var current = Expression.Parse(condition);
            while (true)
            {
                var body = Block(out var end);
                branches.Add((current, body));
                if (end is null) throw new FormatException("{% if %} without {% endif %}");
                if (end.StartsWith("elif ", StringComparison.Ordinal)) { current = Expression.Parse(end[5..]); continue; }
                if (end == "else")
                {
                    var otherwise = Block(out var last);
                    if (last != "endif") throw new FormatException("{% else %} without {% endif %}");
                    return new IfNode(branches, otherwise);
                }
                if (end == "endif") return new IfNode(branches, null);
                throw new FormatException($"{{% {end} %}} inside {{% if %}}");
            }
        }

        private ForNode For(string header)
        {
            int inAt = header.IndexOf(" in ", StringComparison.Ordinal);
            if (inAt < 0) throw new FormatException($"{{% for {header} %}} needs 'in'");
            var names = header[..inAt].Split(',', StringSplitOptions.TrimEntries);
            var items = Expression.Parse(header[(inAt + 4)..]);
            var body = Block(out var end);
            if (end != "endfor") throw new FormatException("{% for %} without {% endfor %}");
            return new ForNode(names, items, body);
        }
    }

    private static readonly HashSet<string> Filters = ["trim", "upper", "lower", "length", "count", "first", "last", "default", "tojson", "string"];
    private static readonly HashSet<string> Tests = ["defined", "undefined", "none", "string", "number"];

    /// <summary>A recursive-descent parser of one expression.</summary>
    private sealed class Expression
    {
        private readonly List<string> _tokens;
        private int _at;

        private Expression(List<string> tokens) => _tokens = tokens;

        public static Expr Parse(string source)
        {
            var parser = new Expression(Tokenize(source));
            var expr = parser.Ternary();
            if (parser._at != parser._tokens.Count) throw new FormatException($"unexpected '{parser._tokens[parser._at]}' in '{source}'");
            return expr;
        }

        private static List<string> Tokenize(string source)
        {
            var tokens = new List<string>();
            for (int i = 0; i < source.Length;)
            {
                char c = source[i];
                if (char.IsWhiteSpace(c)) { i++; continue; }
                if (c is '\'' or '"')
                {
                    var text = new StringBuilder("\"");
                    int j = i + 1;
                    for (; j < source.Length && source[j] != c; j++)
                    {
                        if (source[j] != '\\' || j + 1 == source.Length) { text.Append(source[j]); continue; }
                        j++;
                        text.Append(source[j] switch { 'n' => '\n', 't' => '\t', var e => e });
                    }
                    if (j >= source.Length) throw new FormatException($"unterminated string in '{source}'");
                    tokens.Add(text.ToString());
                    i = j + 1;
                    continue;
                }
                if (char.IsDigit(c))
                {
                    int j = i;
                    while (j < source.Length && (char.IsDigit(source[j]) || source[j] == '.')) j++;
                    tokens.Add(source[i..j]);
                    i = j;
                    continue;
                }
                if (char.IsLetter(c) || c == '_')
                {
                    int j = i;
                    while (j < source.Length && (char.IsLetterOrDigit(source[j]) || source[j] == '_')) j++;
                    tokens.Add(source[i..j]);
                    i = j;
                    continue;
                }
                var two = i + 1 < source.Length ? source.Substring(i, 2) : "";
                if (two is "==" or "!=" or "<=" or ">=" or "//") { tokens.Add(two); i += 2; continue; }
                if ("+-*/%~<>()[]{}.,:|".Contains(c)) { tokens.Add(c.ToString()); i++; continue; }
                throw new FormatException($"unexpected '{c}' in '{source}'");
            }
            return tokens;
        }

        private string? Peek(int ahead = 0) => _at + ahead < _tokens.Count ? _tokens[_at + ahead] : null;

        private bool Accept(string token)
        {
            if (Peek() != token) return false;
            _at++;
            return true;
        }

        private void Expect(string token)
        {
            if (!Accept(token)) throw new FormatException($"expected '{token}', found '{Peek() ?? "the end"}'");
        }

        private Expr Ternary()
        {
            var value = Or();
            if (!Accept("if")) return value;
            var condition = Or();
            Expect("else");
            return new Conditional(condition, value, Ternary());
        }

        private Expr Or()
        {
            var left = And();
            while (Accept("or")) left = new Binary("or", left, And());
            return left;
        }

        private Expr And()
        {
            var left = Not();
            while (Accept("and")) left = new Binary("and", left, Not());
            return left;
        }

        private Expr Not() => Accept("not") ? new Unary("not", Not()) : Comparison();

        private Expr Comparison()
        {
            var left = Concatenation();
            while (true)
            {
                if (Peek() is "==" or "!=" or "<" or ">" or "<=" or ">=" or "in") left = new Binary(_tokens[_at++], left, Concatenation());
                else if (Peek() == "not" && Peek(1) == "in") { _at += 2; left = new Unary("not", new Binary("in", left, Concatenation())); }
                else if (Accept("is"))
                {
                    bool negated = Accept("not");
                    var test = _tokens[_at++];
                    if (!Tests.Contains(test)) throw new FormatException($"the test 'is {test}' is not supported");
                    left = new Test(left, test, negated);
                }
                else return left;
            }
        }

        private Expr Concatenation()
        {
            var left = Additive();
            while (Accept("~")) left = new Binary("~", left, Additive());
            return left;
        }

        private Expr Additive()
        {
            var left = Multiplicative();
            while (Peek() is "+" or "-") left = new Binary(_tokens[_at++], left, Multiplicative());
            return left;
        }

        private Expr Multiplicative()
        {
            var left = UnaryMinus();
            while (Peek() is "*" or "/" or "//" or "%") left = new Binary(_tokens[_at++], left, UnaryMinus());
            return left;
        }

        private Expr UnaryMinus() => Accept("-") ? new Unary("-", UnaryMinus()) : Filtered();

        private Expr Filtered()
        {
            var value = Postfix();
            while (Accept("|"))
            {
                string name = _tokens[_at++];
                if (!Filters.Contains(name)) throw new FormatException($"the filter '{name}' is not supported");
                value = new Filter(value, name, Accept("(") ? Arguments(")") : []);
            }
            return value;
        }

        private Expr Postfix()
        {
            var value = Primary();
            while (true)
            {
                if (Accept(".")) value = new Attribute(value, _tokens[_at++]);
                else if (Accept("(")) value = new Call(value, Arguments(")"));
                else if (Accept("["))
                {
                    Expr? from = Peek() == ":" ? null : Ternary();
                    if (Accept(":"))
                    {
                        Expr? to = Peek() == "]" ? null : Ternary();
                        Expect("]");
                        value = new Slice(value, from, to);
                    }
                    else
                    {
                        Expect("]");
                        value = new Index(value, from!);
                    }
                }
                else return value;
            }
        }

        private List<Expr> Arguments(string close)
        {
            var args = new List<Expr>();
            while (!Accept(close))
            {
                if (args.Count > 0) Expect(",");
                args.Add(Ternary());
            }
            return args;
        }

        private Expr Primary()
        {
            var token = Peek() ?? throw new FormatException("an expression ends too early");
            _at++;
            if (token.StartsWith('"')) return new Literal(token[1..]);
            if (char.IsDigit(token[0]))
                return new Literal(token.Contains('.') ? double.Parse(token, CultureInfo.InvariantCulture) : long.Parse(token, CultureInfo.InvariantCulture));
            switch (token)
            {
                case "true" or "True": return new Literal(true);
                case "false" or "False": return new Literal(false);
                case "none" or "None": return new Literal(null);
                case "(":
                    var inner = Ternary();
                    Expect(")");
                    return inner;
                case "[":
                    return new ListExpr(Arguments("]"));
                case "{":
                    var items = new List<(Expr, Expr)>();
                    while (!Accept("}"))
                    {
                        if (items.Count > 0) Expect(",");
                        var key = Ternary();
                        Expect(":");
                        items.Add((key, Ternary()));
                    }
                    return new DictExpr(items);
            }
            if (char.IsLetter(token[0]) || token[0] == '_') return new Name(token);
            throw new FormatException($"unexpected '{token}'");
        }
    }

    // ---- evaluation ----

    private static void Run(List<Node> nodes, Dictionary<string, object?> scope, StringBuilder output)
    {
        foreach (var node in nodes)
        {
            switch (node)
            {
                case TextNode text:
                    output.Append(text.Text);
                    break;
                case OutputNode value:
                    output.Append(Text(Evaluate(value.Value, scope)));
                    break;
                case SetNode set:
                    scope[set.Name] = Evaluate(set.Value, scope);
                    break;
                case IfNode branches:
                    var taken = branches.Branches.FirstOrDefault(b => Truthy(Evaluate(b.Condition, scope)));
                    if (taken.Body is not null) Run(taken.Body, scope, output);
                    else if (branches.Else is not null) Run(branches.Else, scope, output);
                    break;
                case ForNode loop:
                    var items = Items(Evaluate(loop.Items, scope)).ToList();
                    // What the loop sets, its own names included, stays inside it, as in Jinja's scoping.
                    var outer = new Dictionary<string, object?>(scope);
                    for (int i = 0; i < items.Count; i++)
                    {
                        if (loop.Names.Length == 1) scope[loop.Names[0]] = items[i];
                        else
                        {
                            var parts = Items(items[i]).ToList();
                            for (int n = 0; n < loop.Names.Length; n++) scope[loop.Names[n]] = n < parts.Count ? parts[n] : null;
                        }
                        scope["loop"] = new Loop(i, items.Count);
                        Run(loop.Body, scope, output);
                    }
                    scope.Clear();
                    foreach (var (name, value) in outer) scope[name] = value;
                    break;
            }
        }
    }

    private static object? Evaluate(Expr expr, Dictionary<string, object?> scope)
    {
        switch (expr)
        {
            case Literal literal: return literal.Value;
            case Name name: return scope.TryGetValue(name.Id, out var value) ? value : new Undefined(name.Id);
            case ListExpr list: return list.Items.Select(i => Evaluate(i, scope)).ToList();
            case DictExpr dict: return dict.Items.ToDictionary(i => Text(Evaluate(i.Key, scope)), i => Evaluate(i.Value, scope));
            case Attribute attribute: return Member(Evaluate(attribute.Target, scope), attribute.Attr);
            case Index index: return Subscript(Evaluate(index.Target, scope), Evaluate(index.Key, scope));
            case Slice slice:
                var sequence = Evaluate(slice.Target, scope);
                int count = sequence is string s ? s.Length : Items(sequence).Count();
                int from = Bound(slice.From, 0), to = Bound(slice.To, count);
                return sequence is string text ? text[from..Math.Max(from, to)] : Items(sequence).Skip(from).Take(Math.Max(0, to - from)).ToList();

                int Bound(Expr? e, int otherwise)
                {
                    if (e is null) return otherwise;
                    long v = Convert.ToInt64(Evaluate(e, scope), CultureInfo.InvariantCulture);
                    return (int)Math.Clamp(v < 0 ? count + v : v, 0, count);
                }
            case Call call: return Invoke(Evaluate(call.Target, scope), [.. call.Args.Select(a => Evaluate(a, scope))]);
            case Unary { Op: "not" } not: return !Truthy(Evaluate(not.Operand, scope));
            case Unary negative: return Arithmetic("-", 0L, Evaluate(negative.Operand, scope));
            case Binary { Op: "and" } and: return Evaluate(and.Left, scope) is var l && !Truthy(l) ? l : Evaluate(and.Right, scope);
            case Binary { Op: "or" } or: return Evaluate(or.Left, scope) is var first && Truthy(first) ? first : Evaluate(or.Right, scope);
            case Binary binary: return Operate(binary.Op, Evaluate(binary.Left, scope), Evaluate(binary.Right, scope));
            case Conditional conditional: return Truthy(Evaluate(conditional.Condition, scope)) ? Evaluate(conditional.Then, scope) : Evaluate(conditional.Else, scope);
            case Test test:
                var operand = Evaluate(test.Operand, scope);
                bool result = test.Name switch
                {
                    "defined" => operand is not Undefined,
                    "undefined" => operand is Undefined,
                    "none" => operand is null,
                    "string" => operand is string,
                    "number" => operand is long or double,
                    _ => throw new TemplateException($"the test 'is {test.Name}' is not supported"),
                };
                return result != test.Negated;
            case Filter filter:
                var input = Evaluate(filter.Operand, scope);
                var args = filter.Args.Select(a => Evaluate(a, scope)).ToList();
                return filter.Name switch
                {
                    "trim" => Text(input).Trim(),
                    "upper" => Text(input).ToUpperInvariant(),
                    "lower" => Text(input).ToLowerInvariant(),
                    "length" or "count" => (long)(input is string str ? str.Length : Items(input).Count()),
                    "first" => Items(input).FirstOrDefault(),
                    "last" => Items(input).LastOrDefault(),
                    "default" => input is Undefined or null && args.Count > 0 ? args[0] : input,
                    "tojson" => JsonSerializer.Serialize(Plain(input)),
                    "string" => Text(input),
                    _ => throw new TemplateException($"the filter '{filter.Name}' is not supported"),
                };
        }
        throw new TemplateException($"cannot evaluate {expr}");
    }

    private static object? Member(object? target, string name) => target switch
    {
        Loop loop => name switch
        {
            "index0" => (long)loop.Index0,
            "index" => (long)loop.Index0 + 1,
            "first" => loop.Index0 == 0,
            "last" => loop.Index0 == loop.Length - 1,
            "length" => (long)loop.Length,
            "revindex0" => (long)(loop.Length - 1 - loop.Index0),
            _ => new Undefined("loop." + name),
        },
        IReadOnlyDictionary<string, object?> dict when dict.TryGetValue(name, out var value) => value,
        IReadOnlyDictionary<string, object?> when name == "items" => new Method(target, name),
        string when name is "strip" or "lstrip" or "rstrip" or "startswith" or "endswith" or "upper" or "lower" or "split" => new Method(target, name),
        _ => new Undefined(name),
    };

    private static object? Subscript(object? target, object? key) => target switch
    {
        IReadOnlyDictionary<string, object?> dict => dict.TryGetValue(Text(key), out var value) ? value : new Undefined(Text(key)),
        string text => text[(int)Position(key, text.Length)].ToString(),
        _ => Items(target).ToList() is var list && list.Count > 0 ? list[(int)Position(key, list.Count)] : new Undefined(Text(key)),
    };

    private static long Position(object? key, int count)
    {
        long i = Convert.ToInt64(key, CultureInfo.InvariantCulture);
        if (i < 0) i += count;
        return i >= 0 && i < count ? i : throw new TemplateException($"index {key} is out of range for {count} items");
    }

    private static object? Invoke(object? target, List<object?> args)
    {
        switch (target)
        {
            case Function { Name: "raise_exception" }:
                throw new TemplateException(args.Count > 0 ? Text(args[0]) : "the chat template refused the conversation");
            case Method { Target: IReadOnlyDictionary<string, object?> dict, Name: "items" }:
                return dict.Select(p => (object?)new List<object?> { p.Key, p.Value }).ToList();
            case Method { Target: string text } method:
                string Arg(int i) => Text(args[i]);
                return method.Name switch
                {
                    "strip" => args.Count > 0 ? text.Trim(Arg(0).ToCharArray()) : text.Trim(),
                    "lstrip" => args.Count > 0 ? text.TrimStart(Arg(0).ToCharArray()) : text.TrimStart(),
                    "rstrip" => args.Count > 0 ? text.TrimEnd(Arg(0).ToCharArray()) : text.TrimEnd(),
                    "startswith" => text.StartsWith(Arg(0), StringComparison.Ordinal),
                    "endswith" => text.EndsWith(Arg(0), StringComparison.Ordinal),
                    "upper" => text.ToUpperInvariant(),
                    "lower" => text.ToLowerInvariant(),
                    _ => args.Count > 0 ? text.Split(Arg(0)).Cast<object?>().ToList() : text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Cast<object?>().ToList(),
                };
            default:
                throw new TemplateException($"{Text(target)} cannot be called");
        }
    }

    private static object? Operate(string op, object? left, object? right) => op switch
    {
        "~" => Text(left) + Text(right),
        "+" when left is string || right is string => left is string && right is string ? Text(left) + Text(right)
            : throw new TemplateException("'+' adds a string only to a string: use '~' to join other values"),
        "+" when left is List<object?> a && right is List<object?> b => a.Concat(b).ToList(),
        "==" => Equal(left, right),
        "!=" => !Equal(left, right),
        "in" => right is string haystack ? haystack.Contains(Text(left), StringComparison.Ordinal)
            : right is IReadOnlyDictionary<string, object?> keys ? keys.ContainsKey(Text(left)) : Items(right).Any(i => Equal(i, left)),
        "<" or ">" or "<=" or ">=" => Compare(op, left, right),
        _ => Arithmetic(op, left, right),
    };

    private static bool Compare(string op, object? left, object? right)
    {
        int order = left is string a && right is string b ? string.CompareOrdinal(a, b) : Number(left).CompareTo(Number(right));
        return op switch { "<" => order < 0, ">" => order > 0, "<=" => order <= 0, _ => order >= 0 };
    }

    private static object Arithmetic(string op, object? left, object? right)
    {
        if (left is long a && right is long b && op != "/")
            return op switch
            {
                "+" => a + b,
                "-" => a - b,
                "*" => a * b,
                "//" => b == 0 ? throw new TemplateException("division by zero") : (long)Math.Floor((double)a / b),
                "%" => b == 0 ? throw new TemplateException("division by zero") : ((a % b) + b) % b,
                _ => throw new TemplateException($"the operator '{op}' is not supported"),
            };
        double x = Number(left), y = Number(right);
        return op switch
        {
            "+" => x + y,
            "-" => x - y,
            "*" => x * y,
            "/" => x / y,
            "//" => Math.Floor(x / y),
            "%" => x - y * Math.Floor(x / y),
            _ => throw new TemplateException($"the operator '{op}' is not supported"),
        };
    }

    private static double Number(object? value) => value switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw new TemplateException($"'{Text(value)}' is not a number"),
    };

    private static bool Equal(object? a, object? b) => (a, b) switch
    {
        (null, null) => true,
        (Undefined, Undefined) => true,
        (long or double or bool, long or double or bool) => Number(a) == Number(b),
        (string x, string y) => x == y,
        _ => Equals(a, b),
    };

    private static bool Truthy(object? value) => value switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        IReadOnlyDictionary<string, object?> d => d.Count > 0,
        System.Collections.ICollection c => c.Count > 0,
        _ => true,
    };

    private static IEnumerable<object?> Items(object? value) => value switch
    {
        string s => s.Select(c => (object?)c.ToString()),
        IReadOnlyDictionary<string, object?> d => d.Keys,
        IEnumerable<object?> e => e,
        null or Undefined => [],
        _ => throw new TemplateException($"'{Text(value)}' is not a sequence"),
    };

    private static string Text(object? value) => value switch
    {
        null => "None",
        Undefined => "",
        bool b => b ? "True" : "False",
        string s => s,
        double d => d.ToString(CultureInfo.InvariantCulture),
        long l => l.ToString(CultureInfo.InvariantCulture),
        _ => JsonSerializer.Serialize(Plain(value)),
    };

    private static object? Plain(object? value) => value is Undefined ? null : value;
}

/// <summary>A chat template refused what it was given (its <c>raise_exception</c>), or used what this engine does not run.</summary>
public sealed class TemplateException(string message) : Exception(message);
