using MeshProxy.Init;

return args is ["wait", .. var rest]
    ? await ReadinessWait.RunAsync(rest)
    : await CaptureInstaller.RunAsync(args);
