//! `warden-demo --listen 127.0.0.1:3001`: the demo MCP server on its own.

use clap::Parser;

/// The demo MCP server (Streamable HTTP at `/mcp`).
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3001")]
    listen: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("demo MCP server on http://{}/mcp", listener.local_addr()?);
    warden_demo::serve(listener).await
}
