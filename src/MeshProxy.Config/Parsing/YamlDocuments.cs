using System.Diagnostics.CodeAnalysis;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.RepresentationModel;

namespace MeshProxy.Config.Parsing;

/// <summary>
/// The one way untrusted YAML text becomes YAML documents, for every reader of it (resource files, the
/// sidecar's bootstrap, pushed snapshots, a pod's override, manifests for kube-inject). Whatever the
/// text is, the answer is documents or one diagnostic with file, line and reason, never an exception:
/// YamlDotNet throws more than <see cref="YamlException"/> on malformed input (its scanner throws
/// <see cref="InvalidOperationException"/> on an unclosed flow mapping, for one), and it has two ways
/// to bring a process down that no catch can stop, which are refused before they are reached.
/// </summary>
public static class YamlDocuments
{
    /// <summary>
    /// How deep collections may nest. A resource needs under ten levels and a Kubernetes manifest a few
    /// dozen; YamlDotNet's representation model recurses once per level, so unbounded nesting
    /// (100,000 "[" in a row) overflows the stack, which kills the process outright.
    /// </summary>
    public const int MaxDepth = 100;

    /// <summary>
    /// How many nodes aliases may add once expanded. Aliases share nodes in memory, but a reader that
    /// walks the tree visits a shared node once per alias: ten levels of ten aliases each are 10^10
    /// visits from a few hundred bytes of text (the "billion laughs").
    /// </summary>
    public const int MaxAliasExpansion = 100_000;

    /// <summary>Reads <paramref name="text"/>; on failure <paramref name="error"/> says where (in <paramref name="file"/>) and why.</summary>
    public static bool TryLoad(string text, string file, [NotNullWhen(true)] out IReadOnlyList<YamlDocument>? documents, [NotNullWhen(false)] out ConfigDiagnostic? error)
    {
        documents = null;
        var scanner = new Scanner(new StringReader(text));
        try
        {
            // First pass over the events alone: the parser is a state machine, so this pass is safe at any depth.
            var parser = new Parser(scanner);
            var depth = 0;
            var aliases = 0;
            var nodes = 0;
            while (parser.MoveNext())
            {
                switch (parser.Current)
                {
                    case MappingStart or SequenceStart:
                        nodes++;
                        if (++depth > MaxDepth)
                        {
                            error = new ConfigDiagnostic(file, LineOf(parser.Current.Start), string.Empty, $"not valid here: collections nested deeper than {MaxDepth} levels");
                            return false;
                        }

                        break;
                    case MappingEnd or SequenceEnd:
                        depth--;
                        break;
                    case AnchorAlias:
                        aliases++;
                        break;
                    case Scalar:
                        nodes++;
                        break;
                }
            }

            scanner = new Scanner(new StringReader(text));
            var stream = new YamlStream();
            stream.Load(new Parser(scanner));
            if (aliases > 0 && !WithinExpansion(stream.Documents, nodes + (long)MaxAliasExpansion, file, out error))
            {
                return false;
            }

            documents = [.. stream.Documents];
            error = null;
            return true;
        }
        catch (YamlException ex)
        {
            error = new ConfigDiagnostic(file, LineOf(ex.Start), string.Empty, $"not valid YAML: {Innermost(ex).Message}");
            return false;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Not YamlDotNet's documented failure, but a failure all the same: its scanner gives up in states it
            // does not name. Where it stopped is the best line there is; the type, not the message, which a trimmed
            // build (the sidecar's) reduces to a resource key.
            error = new ConfigDiagnostic(file, LineOf(scanner.CurrentPosition), string.Empty, $"not valid YAML: cannot be read past this point ({ex.GetType().Name})");
            return false;
        }
    }

    /// <summary>Walks the documents as a reader would, aliases expanded, within a budget of visits and the depth bound (an alias inside the node it names never ends).</summary>
    private static bool WithinExpansion(IList<YamlDocument> documents, long budget, string file, [NotNullWhen(false)] out ConfigDiagnostic? error)
    {
        foreach (var document in documents)
        {
            if (Visit(document.RootNode, 1, ref budget) is { } stop)
            {
                var reason = budget < 0
                    ? $"not valid here: aliases expand to more than {MaxAliasExpansion} further nodes"
                    : $"not valid here: nested deeper than {MaxDepth} levels once aliases are expanded (an alias inside the node it names?)";
                error = new ConfigDiagnostic(file, LineOf(stop.Start), string.Empty, reason);
                return false;
            }
        }

        error = null;
        return true;
    }

    // The node where the walk had to stop, or null. Recursion is bounded by MaxDepth, so the stack is safe.
    private static YamlNode? Visit(YamlNode node, int depth, ref long budget)
    {
        if (--budget < 0 || depth > MaxDepth)
        {
            return node;
        }

        switch (node)
        {
            case YamlMappingNode mapping:
                foreach (var (key, value) in mapping.Children)
                {
                    if ((Visit(key, depth + 1, ref budget) ?? Visit(value, depth + 1, ref budget)) is { } stop)
                    {
                        return stop;
                    }
                }

                break;
            case YamlSequenceNode sequence:
                foreach (var item in sequence.Children)
                {
                    if (Visit(item, depth + 1, ref budget) is { } stop)
                    {
                        return stop;
                    }
                }

                break;
        }

        return null;
    }

    private static int LineOf(Mark mark) => (int)Math.Clamp(mark.Line, 0, int.MaxValue);

    private static Exception Innermost(Exception ex) => ex.InnerException is { } inner ? Innermost(inner) : ex;
}
