using System.CommandLine;
using MeshProxy.Cli;

var proxyStatus = ProxyStatusCommand.Create();

var path = new Argument<string>("path") { Description = "A resource file, or a directory of *.yaml / *.yml files" };
var validate = new Command("validate", "Check resources; print every error as file:line: field: reason (exit 1 if any)") { path };
validate.SetAction(parse => ValidateCommand.Run(parse.GetValue(path)!, Console.Out, Console.Error));

var crds = new Command("crds", "Print the meshproxy.io CustomResourceDefinitions, for kubectl apply -f -");
crds.SetAction(_ => Console.Out.Write(MeshProxy.Config.Schema.CrdWriter.Write()));

var root = new RootCommand("meshproxy: operate a MeshProxy mesh") { proxyStatus, validate, crds, TokenCommand.Create(), ExplainCommand.Create(), MeshProxy.Injection.Cli.KubeInjectCommand.Create() };
foreach (var command in MeshProxy.Cli.Install.InstallCommand.Create())
{
    root.Subcommands.Add(command);
}

root.Subcommands.Add(MeshProxy.Cli.Check.CheckCommand.Create());

return await root.Parse(args).InvokeAsync();
