using System.Reflection;
using MeshProxy.ControlPlane.Hosting;
using Microsoft.Extensions.Logging;

namespace MeshProxy.ControlPlane.Tests;

/// <summary>
/// An event id names one kind of line within a process: operators filter and alert on it, and tests count lines by
/// it. Each process's assemblies (the control plane with the libraries it loads; the sidecar) keep their ids unique.
/// </summary>
public sealed class LogEventIdTests
{
    public static TheoryData<string> Processes => ["control plane", "sidecar"];

    [Theory]
    [MemberData(nameof(Processes))]
    public void Every_event_id_names_one_log_message_in_a_process(string process)
    {
        Assembly[] assemblies = process == "sidecar"
            ? [typeof(MeshProxy.Sidecar.Hosting.SidecarHost).Assembly, typeof(MeshProxy.Identity.SpiffeId).Assembly]
            : [typeof(ControlPlaneHost).Assembly, typeof(MeshProxy.Identity.SpiffeId).Assembly];
        var messages = assemblies.Distinct()
            .SelectMany(a => a.GetTypes())
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            .Select(m => (Method: $"{m.DeclaringType!.Name}.{m.Name}", Attribute: m.GetCustomAttribute<LoggerMessageAttribute>()))
            .Where(m => m.Attribute is not null)
            .ToList();
        Assert.NotEmpty(messages);

        var shared = messages.GroupBy(m => m.Attribute!.EventId).Where(g => g.Count() > 1)
            .Select(g => $"{g.Key}: {string.Join(", ", g.Select(m => m.Method))}").ToList();
        Assert.True(shared.Count == 0, "event ids used twice: " + string.Join("; ", shared));
    }
}
