using System.Diagnostics;
using MeshProxy.Config.Resources;
using Microsoft.AspNetCore.Http;

namespace MeshProxy.Sidecar.Telemetry;

/// <summary>
/// Reads the caller's trace context from request headers and writes ours for the next hop, in the
/// format the mesh config names: W3C Trace Context (traceparent, tracestate), B3 single header (b3) or
/// B3 multi header (X-B3-TraceId, X-B3-SpanId, X-B3-Sampled). Only called when tracing is on.
/// </summary>
internal static class TracePropagator
{
    public const string TraceParent = "traceparent";
    public const string TraceState = "tracestate";
    public const string B3 = "b3";
    public const string B3TraceId = "x-b3-traceid";
    public const string B3SpanId = "x-b3-spanid";
    public const string B3ParentSpanId = "x-b3-parentspanid";
    public const string B3Sampled = "x-b3-sampled";
    public const string B3Flags = "x-b3-flags";

    /// <summary>What the caller sent.</summary>
    public enum Decision
    {
        /// <summary>No (usable) context: a new trace, sampled at the configured ratio.</summary>
        None,

        /// <summary>A parent context (sampled or not, as its flags say).</summary>
        Parent,

        /// <summary>B3 "0" without ids: the caller decided not to sample.</summary>
        Deny,
    }

    public static Decision Extract(IHeaderDictionary headers, TracePropagation format, out ActivityContext parent)
    {
        parent = default;
        switch (format)
        {
            case TracePropagation.W3C:
                var traceparent = headers[TraceParent];
                if (traceparent.Count != 1)
                {
                    return Decision.None;
                }

                var tracestate = headers[TraceState];
                return ActivityContext.TryParse(traceparent[0], tracestate.Count == 1 ? tracestate[0] : null, isRemote: true, out parent)
                    ? Decision.Parent
                    : Decision.None;

            case TracePropagation.B3:
                var single = headers[B3];
                return single.Count == 1 ? ParseB3Single(single[0], out parent) : Decision.None;

            default:
                return ParseB3Multi(headers, out parent);
        }
    }

    /// <summary>Replaces the request's trace headers with <paramref name="span"/>'s context, so the next hop continues from our span.</summary>
    public static void Inject(IHeaderDictionary headers, TracePropagation format, Activity span)
    {
        var sampled = span.Recorded;
        switch (format)
        {
            case TracePropagation.W3C:
                headers[TraceParent] = $"00-{span.TraceId.ToHexString()}-{span.SpanId.ToHexString()}-{(sampled ? "01" : "00")}";
                if (!string.IsNullOrEmpty(span.TraceStateString))
                {
                    headers[TraceState] = span.TraceStateString;
                }

                break;
            case TracePropagation.B3:
                headers[B3] = span.ParentSpanId == default
                    ? $"{span.TraceId.ToHexString()}-{span.SpanId.ToHexString()}-{(sampled ? "1" : "0")}"
                    : $"{span.TraceId.ToHexString()}-{span.SpanId.ToHexString()}-{(sampled ? "1" : "0")}-{span.ParentSpanId.ToHexString()}";
                break;
            default:
                headers[B3TraceId] = span.TraceId.ToHexString();
                headers[B3SpanId] = span.SpanId.ToHexString();
                headers[B3Sampled] = sampled ? "1" : "0";
                headers.Remove(B3Flags);
                if (span.ParentSpanId != default)
                {
                    headers[B3ParentSpanId] = span.ParentSpanId.ToHexString();
                }
                else
                {
                    headers.Remove(B3ParentSpanId);
                }

                break;
        }
    }

    /// <summary>b3: {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]], or a lone sampling state (0, 1, d).</summary>
    internal static Decision ParseB3Single(string? value, out ActivityContext parent)
    {
        parent = default;
        if (string.IsNullOrEmpty(value))
        {
            return Decision.None;
        }

        var span = value.AsSpan();
        if (span.Length == 1)
        {
            return span[0] == '0' ? Decision.Deny : Decision.None;
        }

        var dash = span.IndexOf('-');
        if (dash < 0)
        {
            return Decision.None;
        }

        var traceId = span[..dash];
        var rest = span[(dash + 1)..];
        dash = rest.IndexOf('-');
        var spanId = dash < 0 ? rest : rest[..dash];
        var state = dash < 0 ? [] : rest[(dash + 1)..];
        dash = state.IndexOf('-');
        if (dash >= 0)
        {
            state = state[..dash];
        }

        // Absent sampling state means "deferred": sample as a root would. A parent-based sampler needs
        // one answer, so deferred is treated like the flag of a sampled parent (Envoy does the same).
        var sampled = state.IsEmpty || state is "1" || state is "d";
        return TryContext(traceId, spanId, sampled, out parent) ? Decision.Parent : Decision.None;
    }

    internal static Decision ParseB3Multi(IHeaderDictionary headers, out ActivityContext parent)
    {
        parent = default;
        var sampledHeader = headers[B3Sampled];
        var flags = headers[B3Flags];
        var debug = flags.Count == 1 && flags[0] == "1";
        var traceId = headers[B3TraceId];
        var spanId = headers[B3SpanId];
        var sampled = debug || sampledHeader.Count == 0 || sampledHeader[0] is "1" or "true";
        if (traceId.Count != 1 || spanId.Count != 1)
        {
            return sampledHeader.Count == 1 && sampledHeader[0] is "0" or "false" ? Decision.Deny : Decision.None;
        }

        return TryContext(traceId[0], spanId[0], sampled, out parent) ? Decision.Parent : Decision.None;
    }

    private static bool TryContext(ReadOnlySpan<char> traceId, ReadOnlySpan<char> spanId, bool sampled, out ActivityContext context)
    {
        context = default;
        if ((traceId.Length != 16 && traceId.Length != 32) || spanId.Length != 16 || !IsLowerHex(traceId) || !IsLowerHex(spanId))
        {
            return false;
        }

        // B3 allows 64-bit trace ids; W3C and OTLP want 128 bits, left-padded with zeros.
        Span<char> padded = stackalloc char[32];
        padded.Fill('0');
        traceId.CopyTo(padded[(32 - traceId.Length)..]);
        var trace = ActivityTraceId.CreateFromString(padded);
        var parent = ActivitySpanId.CreateFromString(spanId);
        if (trace == default || parent == default)
        {
            return false;
        }

        context = new ActivityContext(trace, parent, sampled ? ActivityTraceFlags.Recorded : ActivityTraceFlags.None, traceState: null, isRemote: true);
        return true;
    }

    private static bool IsLowerHex(ReadOnlySpan<char> value)
    {
        foreach (var c in value)
        {
            if (!char.IsAsciiDigit(c) && c is not (>= 'a' and <= 'f'))
            {
                return false;
            }
        }

        return true;
    }
}
