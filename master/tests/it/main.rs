//! Integration tests: whole clusters on loopback. Masters and workers talk real gRPC
//! (in-process on 127.0.0.1:0, or as real `barrage` processes), against the in-process
//! dify-api double, and every figure we report is compared with the mock's ground truth.

mod arrivals;
mod cli;
mod cluster;
mod compare;
mod correlation;
mod csv;
mod deploy;
mod dify;
mod examples;
mod faults;
mod golden;
mod goodput;
mod hostile_worker;
mod html;
mod hunt;
mod inputs;
mod integrity;
mod locust;
mod netns;
mod netns_ports;
mod nginx;
mod nodes;
mod prometheus;
mod replay;
mod replicas;
mod secrets;
mod shapes;
mod signals;
mod support;
mod thresholds;
mod tls;
mod web;
mod webui;
mod worker_port;
