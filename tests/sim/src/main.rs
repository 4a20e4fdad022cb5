//! `dingtalk-sim`: starts a simulator with the demo corp (and optionally a generated one) and
//! prints its URL and credentials. Stop it with Ctrl-C.
//!
//! Usage: `dingtalk-sim [--port N] [--users N] [--departments N] [--seed N] [--no-qps-limit]`

use dingtalk_sim::{CorpSpec, OrgSpec, Sim};

fn usage() -> ! {
    eprintln!(
        "usage: dingtalk-sim [--port N] [--users N] [--departments N] [--seed N] [--no-qps-limit]\n\
         Starts the demo corp `dingdemocorp`; --users adds a generated corp `dinggencorp`."
    );
    std::process::exit(2)
}

fn main() {
    let mut port = 0u16;
    let mut users: Option<usize> = None;
    let mut departments = 50usize;
    let mut seed = 42u64;
    let mut qps = Some(20);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> u64 {
            args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                eprintln!("{name} needs a number");
                usage()
            })
        };
        match a.as_str() {
            "--port" => port = num("--port") as u16,
            "--users" => users = Some(num("--users") as usize),
            "--departments" => departments = num("--departments") as usize,
            "--seed" => seed = num("--seed"),
            "--no-qps-limit" => qps = None,
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    let mut b = Sim::builder()
        .corp(CorpSpec::demo())
        .qps_limit(qps)
        .addr(&format!("127.0.0.1:{port}"));
    if let Some(n) = users {
        let spec = OrgSpec {
            users: n,
            departments,
            seed,
            ..OrgSpec::default()
        };
        b = b.corp(CorpSpec::generated("dinggencorp", &spec));
    }
    let sim = match b.start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start the simulator: {e}");
            std::process::exit(1)
        }
    };
    println!("DingTalk simulator listening on {}", sim.base_url());
    println!(
        "  oapi_base_url = api_base_url = login_base_url = {}",
        sim.base_url()
    );
    for corp in sim.corp_ids() {
        if let Some(c) = sim.credentials(&corp) {
            println!();
            println!("corp {} ({})", c.corp_id, c.corp_name);
            println!("  app_key       = {}", c.app_key);
            println!("  app_secret    = {}", c.app_secret);
            println!("  agent_id      = {}", c.agent_id);
            println!("  sso_secret    = {}", c.sso_secret);
            println!("  event_token   = {}", c.event_token);
            println!("  event_aes_key = {}", c.event_aes_key);
            let (d, u) = sim
                .with_org(&corp, |o| (o.department_count(), o.user_count()))
                .unwrap_or((0, 0));
            println!("  {d} departments, {u} members");
        }
    }
    println!();
    println!("QR login page: {}/oauth2/auth?client_id=<app_key>&response_type=code&redirect_uri=<url>&state=<s>", sim.base_url());
    loop {
        std::thread::park();
    }
}
